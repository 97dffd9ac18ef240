package govfs_test

import (
	"database/sql"
	"fmt"
	"testing"

	_ "github.com/cambiumdb/cambium/extension/govfs"
	_ "github.com/ncruces/go-sqlite3/driver"
)

func openDB(t testing.TB, dir, name string, params string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", fmt.Sprintf("file:%s?vfs=cambium&dir=%s%s", name, dir, params))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "smoke.db", "")
	for _, q := range []string{
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"INSERT INTO t(v) VALUES ('a'), ('b'), ('c')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 3 {
		t.Fatalf("count %d %v", n, err)
	}
	var s string
	if err := db.QueryRow("PRAGMA cambium_status").Scan(&s); err != nil {
		t.Fatal(err)
	}
	t.Log(s)
	var jm, sync string
	db.QueryRow("PRAGMA journal_mode").Scan(&jm)
	db.QueryRow("PRAGMA synchronous").Scan(&sync)
	t.Log("journal_mode", jm, "synchronous", sync)
	_, err := db.Exec("PRAGMA journal_mode=WAL")
	t.Log("wal:", err)
	_, err = db.Exec("PRAGMA cambium_nope")
	t.Log("nope:", err)
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&s); err != nil || s != "ok" {
		t.Fatal(s, err)
	}
	db.Close()
	db = openDB(t, dir, "smoke.db", "")
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 3 {
		t.Fatalf("after reopen: count %d %v", n, err)
	}
	_, err = openDB(t, dir, "a/../b", "").Exec("CREATE TABLE x(y)")
	t.Log("bad name:", err)
	_, err = openDB(t, dir, "ok.db", "&dri=x").Exec("CREATE TABLE x(y)")
	t.Log("bad param:", err)
}
