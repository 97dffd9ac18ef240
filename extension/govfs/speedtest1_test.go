package govfs_test

import (
	"fmt"
	"net/url"
	"testing"
)

// TestSpeedtest1 runs SQLite's speedtest1 at a small size on a volume: its
// test sets insert, update and delete in and out of transactions, build
// indexes, join, VACUUM, ALTER TABLE, run integrity_check and ANALYZE, and
// reopen the database; any SQL error ends it with exit 1.
func TestSpeedtest1(t *testing.T) {
	size := "5"
	if testing.Short() {
		size = "1"
	}
	dir := t.TempDir()
	db := fmt.Sprintf("file:speedtest1.db?vfs=cambium&dir=%s", url.QueryEscape(dir))
	if code, _ := runProgram(t, t.TempDir(), 64<<20, "speedtest1", "--size", size, db); code != 0 {
		t.Fatalf("speedtest1 --size %s: exit %d (its error is in the log above)", size, code)
	}
	// It ran on the volume, which holds its versions.
	ro := openDB(t, dir, "speedtest1.db", "&mode=ro")
	if v := queryInt(t, ro, "PRAGMA cambium_version"); v == 0 {
		t.Fatalf("the volume has %d versions after speedtest1", v)
	}
	integrityOK(t, ro)
}
