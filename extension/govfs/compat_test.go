package govfs_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// What apps do to a database at startup or in maintenance, on a volume.

// fillItems makes table items of rows rows, each with a 2,000-byte body.
func fillItems(t testing.TB, db *sql.DB, schema string, rows int) {
	t.Helper()
	mustExec(t, db, fmt.Sprintf("CREATE TABLE %sitems(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)", schema))
	mustExec(t, db, fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO %sitems SELECT i, i %% 7, randomblob(2000) FROM n`, schema), rows)
}

// openPlain opens a plain SQLite file through SQLite's own VFS.
func openPlain(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?vfs=os")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// volumePages is the volume's own page count (PRAGMA cambium_status), which
// SQLite's page_count, read from the database header, does not show.
func volumePages(t testing.TB, db *sql.DB) int64 {
	t.Helper()
	var status struct {
		PageCount int64 `json:"page_count"`
	}
	if err := json.Unmarshal([]byte(queryString(t, db, "PRAGMA cambium_status")), &status); err != nil {
		t.Fatal(err)
	}
	return status.PageCount
}

// TestCompat_IncrementalVacuum: auto_vacuum=INCREMENTAL, which takes a
// VACUUM on an existing database, then incremental_vacuum gives the free
// pages back: the volume shrinks, and stays so when reopened.
func TestCompat_IncrementalVacuum(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "inc.db", "")
	db.SetMaxOpenConns(1)
	fillItems(t, db, "", 300)
	mustExec(t, db, "PRAGMA auto_vacuum=INCREMENTAL")
	mustExec(t, db, "VACUUM")
	if got := queryInt(t, db, "PRAGMA auto_vacuum"); got != 2 {
		t.Fatalf("auto_vacuum %d after VACUUM, want 2 (incremental)", got)
	}
	mustExec(t, db, "DELETE FROM items WHERE id > 30")
	pages, free := queryInt(t, db, "PRAGMA page_count"), queryInt(t, db, "PRAGMA freelist_count")
	if free < pages/2 {
		t.Fatalf("%d free pages of %d after deleting nine rows in ten", free, pages)
	}
	want := queryString(t, db, digestQuery)
	mustExec(t, db, "PRAGMA incremental_vacuum")
	if got := queryInt(t, db, "PRAGMA page_count"); got != pages-free {
		t.Fatalf("page_count %d after incremental_vacuum, want %d - %d free", got, pages, free)
	}
	if got := queryInt(t, db, "PRAGMA freelist_count"); got != 0 {
		t.Fatalf("freelist_count %d after incremental_vacuum", got)
	}
	if got := volumePages(t, db); got != pages-free {
		t.Fatalf("the volume has %d pages after incremental_vacuum, want %d", got, pages-free)
	}
	integrityOK(t, db)
	db.Close()

	db = openDB(t, dir, "inc.db", "")
	if got := queryInt(t, db, "PRAGMA page_count"); got != pages-free {
		t.Fatalf("page_count %d after reopen, want %d", got, pages-free)
	}
	if got := queryString(t, db, digestQuery); got != want {
		t.Fatalf("rows after incremental_vacuum and reopen: %s, want %s", got, want)
	}
	integrityOK(t, db)
}

// TestCompat_VacuumInto: VACUUM INTO a plain file, named by a URI with
// SQLite's own VFS, writes a database that plain SQLite opens, with every
// row; a bare path names a volume (the connection's VFS is Cambium), which
// a path cannot be: a clear error says how to name the file.
func TestCompat_VacuumInto(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "src.db", "")
	fillItems(t, db, "", 200)
	want := queryString(t, db, digestQuery)

	path := filepath.Join(t.TempDir(), "backup.db")
	mustExec(t, db, "VACUUM INTO ?", "file:"+path+"?vfs=os")
	plain := openPlain(t, path)
	if got := queryString(t, plain, digestQuery); got != want {
		t.Fatalf("the plain copy holds %s, want %s", got, want)
	}
	integrityOK(t, plain)

	mustExec(t, db, "VACUUM INTO ?", fmt.Sprintf("file:copy.db?vfs=cambium&dir=%s", url.QueryEscape(dir)))
	if got := queryString(t, openDB(t, dir, "copy.db", "&mode=ro"), digestQuery); got != want {
		t.Fatalf("the volume copy holds %s, want %s", got, want)
	}

	_, err := db.Exec("VACUUM INTO ?", filepath.Join(t.TempDir(), "bare.db"))
	if err == nil || !strings.Contains(err.Error(), "a file path, not a volume name") || !strings.Contains(err.Error(), "?vfs=") {
		t.Fatalf("VACUUM INTO a bare path: %v, want an error saying to name a plain file by a URI with its VFS", err)
	}
}

// TestCompat_Optimize: PRAGMA optimize, which apps run before closing or
// now and then, works; with the flag that analyzes every table it writes
// sqlite_stat1, which the next open reads.
func TestCompat_Optimize(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "opt.db", "")
	fillItems(t, db, "", 100)
	mustExec(t, db, "CREATE INDEX items_qty ON items(qty)")
	mustExec(t, db, "PRAGMA optimize")
	mustExec(t, db, "PRAGMA optimize=0x10002")
	if n := queryInt(t, db, "SELECT count(*) FROM sqlite_stat1 WHERE idx = 'items_qty'"); n != 1 {
		t.Fatalf("%d sqlite_stat1 rows for items_qty after PRAGMA optimize=0x10002", n)
	}
	db.Close()
	db = openDB(t, dir, "opt.db", "")
	if s := queryString(t, db, "SELECT stat FROM sqlite_stat1 WHERE idx = 'items_qty'"); !strings.HasPrefix(s, "100 ") {
		t.Fatalf("sqlite_stat1 after reopen: %q", s)
	}
	integrityOK(t, db)
}

// TestCompat_Attach: one connection attaches a second volume and a plain
// file; a transaction across the three commits in each, a rolled back one
// in none; the attached volume's journal mode is MEMORY, as the main
// one's. The volume is named with its dir (an attached volume is opened
// by the same rules as any other: dir=, else CAMBIUM_DIR).
func TestCompat_Attach(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(t.TempDir(), "plain.db")
	db := openDB(t, dir, "main.db", "")
	db.SetMaxOpenConns(1)
	mustExec(t, db, "ATTACH ? AS other", fmt.Sprintf("file:other.db?vfs=cambium&dir=%s", url.QueryEscape(dir)))
	mustExec(t, db, "ATTACH ? AS plain", "file:"+path+"?vfs=os")
	mustExec(t, db, "CREATE TABLE other.pre(a)")
	mustExec(t, db, "CREATE TABLE plain.pre(a)")
	// With the default journal mode, the attached volume and the plain
	// file need a super-journal, which is refused; with MEMORY, as the
	// main volume has, they do not.
	mustExec(t, db, "BEGIN")
	mustExec(t, db, "INSERT INTO other.pre VALUES (1)")
	mustExec(t, db, "INSERT INTO plain.pre VALUES (1)")
	if _, err := db.Exec("COMMIT"); !errors.Is(err, sqlite3.CANTOPEN) {
		t.Fatalf("COMMIT across an attached volume in journal_mode=DELETE and a plain file: %v, want SQLITE_CANTOPEN", err)
	}
	db.Exec("ROLLBACK") // if the failed COMMIT left the transaction open
	if n := queryInt(t, db, "SELECT (SELECT count(*) FROM other.pre) + (SELECT count(*) FROM plain.pre)"); n != 0 {
		t.Fatalf("the refused transaction left %d rows", n)
	}
	mustExec(t, db, "PRAGMA other.journal_mode=MEMORY")
	for _, schema := range []string{"main", "other", "plain"} {
		mustExec(t, db, fmt.Sprintf("CREATE TABLE %s.kv(k INTEGER PRIMARY KEY, v TEXT)", schema))
	}
	across := func(end string, k int) {
		t.Helper()
		mustExec(t, db, "BEGIN")
		for _, schema := range []string{"main", "other", "plain"} {
			mustExec(t, db, fmt.Sprintf("INSERT INTO %s.kv VALUES (?, ?)", schema), k, schema)
		}
		mustExec(t, db, end)
	}
	across("COMMIT", 1)
	across("ROLLBACK", 2)
	across("COMMIT", 3)
	if got := queryString(t, db, `SELECT group_concat(k || v) FROM (SELECT * FROM main.kv UNION ALL
		SELECT * FROM other.kv UNION ALL SELECT * FROM plain.kv)`); got != "1main,3main,1other,3other,1plain,3plain" {
		t.Fatalf("rows across the three: %s", got)
	}
	db.Close()

	for name, db := range map[string]*sql.DB{
		"main": openDB(t, dir, "main.db", "&mode=ro"), "other": openDB(t, dir, "other.db", "&mode=ro"), "plain": openPlain(t, path),
	} {
		if got := queryString(t, db, "SELECT group_concat(k || v) FROM kv"); got != fmt.Sprintf("1%s,3%s", name, name) {
			t.Fatalf("%s holds %s", name, got)
		}
		integrityOK(t, db)
	}
}

// TestCompat_HarmlessPragmas: wal_checkpoint, which apps run after
// journal_mode=WAL or on a timer, answers its row as SQLite does outside
// WAL mode (not busy, no log); mmap_size is accepted and reads go on.
func TestCompat_HarmlessPragmas(t *testing.T) {
	db := openDB(t, t.TempDir(), "harmless.db", "")
	db.SetMaxOpenConns(1)
	fillItems(t, db, "", 50)
	want := queryString(t, db, digestQuery)
	mustExec(t, db, "PRAGMA journal_mode=WAL")
	for _, q := range []string{"PRAGMA wal_checkpoint", "PRAGMA wal_checkpoint(TRUNCATE)"} {
		var busy, log, done int64
		if err := db.QueryRow(q).Scan(&busy, &log, &done); err != nil || busy != 0 || log != -1 || done != -1 {
			t.Fatalf("%s: %d %d %d, %v; want 0 -1 -1", q, busy, log, done, err)
		}
	}
	mustExec(t, db, "PRAGMA mmap_size=268435456")
	if _, err := db.Exec("PRAGMA mmap_size"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "UPDATE items SET qty = qty + 1 WHERE id % 2 = 0")
	mustExec(t, db, "UPDATE items SET qty = qty - 1 WHERE id % 2 = 0")
	if got := queryString(t, db, digestQuery); got != want {
		t.Fatalf("rows with mmap_size set: %s, want %s", got, want)
	}
	integrityOK(t, db)
}

// TestCompat_AttachTwoPlainFiles: a transaction that writes two attached
// plain files on a volume's connection would need a super-journal on disk,
// which SQLite opens through the volume's VFS: it is refused with a clear
// error and rolls back everywhere; each plain file alone commits.
func TestCompat_AttachTwoPlainFiles(t *testing.T) {
	files := t.TempDir()
	db := openDB(t, t.TempDir(), "main.db", "")
	db.SetMaxOpenConns(1)
	mustExec(t, db, "CREATE TABLE main.kv(k INTEGER PRIMARY KEY, v TEXT)")
	for _, schema := range []string{"p1", "p2"} {
		mustExec(t, db, "ATTACH ? AS "+schema, "file:"+filepath.Join(files, schema+".db")+"?vfs=os")
		mustExec(t, db, fmt.Sprintf("CREATE TABLE %s.kv(k INTEGER PRIMARY KEY, v TEXT)", schema))
	}
	mustExec(t, db, "BEGIN")
	for _, schema := range []string{"main", "p1", "p2"} {
		mustExec(t, db, fmt.Sprintf("INSERT INTO %s.kv VALUES (1, ?)", schema), schema)
	}
	log := captureLog(t)
	// SQLite's error for the COMMIT carries its code only; the log says why.
	if _, err := db.Exec("COMMIT"); !errors.Is(err, sqlite3.CANTOPEN) || !strings.Contains(log.String(), "needs a super-journal on disk") {
		t.Fatalf("COMMIT of a transaction writing two plain files: %v, log %q; want SQLITE_CANTOPEN and the super-journal refused in the log", err, log.String())
	}
	db.Exec("ROLLBACK")
	for _, schema := range []string{"main", "p1", "p2"} {
		if n := queryInt(t, db, fmt.Sprintf("SELECT count(*) FROM %s.kv", schema)); n != 0 {
			t.Fatalf("%s has %d rows of the refused transaction", schema, n)
		}
	}
	for _, schema := range []string{"p1", "p2"} {
		mustExec(t, db, fmt.Sprintf("BEGIN; INSERT INTO main.kv(v) VALUES ('%[1]s'); INSERT INTO %[1]s.kv VALUES (2, '%[1]s'); COMMIT", schema))
	}
	if got := queryString(t, db, "SELECT group_concat(v) FROM main.kv"); got != "p1,p2" {
		t.Fatalf("main holds %s", got)
	}
	for _, schema := range []string{"p1", "p2"} {
		if got := queryString(t, openPlain(t, filepath.Join(files, schema+".db")), "SELECT group_concat(k || v) FROM kv"); got != "2"+schema {
			t.Fatalf("%s holds %s", schema, got)
		}
	}
}
