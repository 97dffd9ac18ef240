package govfs_test

import (
	"database/sql"
	"fmt"
	"net/url"
	"testing"

	_ "github.com/cambiumdb/cambium/extension/govfs"
	_ "github.com/ncruces/go-sqlite3/driver"
)

// openDB opens volume name in dir through the cambium VFS; params are
// extra URI parameters ("&k=v"). The pool is closed when the test ends.
func openDB(t testing.TB, dir, name string, params string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", fmt.Sprintf("file:%s?vfs=cambium&dir=%s%s", name, url.QueryEscape(dir), params))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
