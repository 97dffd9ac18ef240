package govfs_test

import (
	"database/sql"
	"fmt"
	"log"
	"net/url"
	"os"

	_ "github.com/cambiumdb/cambium/extension/govfs"
	_ "github.com/ncruces/go-sqlite3/driver"
)

// A database on a Cambium volume: the file name is the volume name, dir is
// the data directory.
func Example() {
	dir, err := os.MkdirTemp("", "cambium-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := sql.Open("sqlite3", "file:acme/orders.db?vfs=cambium&dir="+url.QueryEscape(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	for _, q := range []string{
		"CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT)",
		"INSERT INTO orders(item) VALUES ('tea'), ('cups')",
	} {
		if _, err := db.Exec(q); err != nil {
			log.Fatal(err)
		}
	}
	var n int
	var version int64
	db.QueryRow("SELECT count(*) FROM orders").Scan(&n)
	db.QueryRow("PRAGMA cambium_version").Scan(&version)
	fmt.Printf("%d orders at version %d\n", n, version)
	// Output: 2 orders at version 2
}
