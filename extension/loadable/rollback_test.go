package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/cambiumdb/cambium/engine"
)

// TestShell_Rollback: in the real sqlite3 shell, a transaction larger than
// SQLite's page cache, on a table with free pages, rolls back. The version
// does not move and no page of the volume holds a byte of it, at several
// page sizes and cache sizes (SQLite took free pages for it, which its
// rollback journal does not restore).
func TestShell_Rollback(t *testing.T) {
	for _, ps := range []int{4096, 65536} {
		for _, cache := range []string{"10", "default"} {
			t.Run(fmt.Sprintf("page=%d/cache=%s", ps, cache), func(t *testing.T) {
				dir := t.TempDir()
				cacheSQL := ""
				if cache != "default" {
					cacheSQL = "PRAGMA cache_size=" + cache + ";"
				}
				r := runShell(t, "", hostEnv(), `.bail on
.load `+libPath(t)+`
.open `+volumeURI("r.db", dir)+`
PRAGMA page_size=`+fmt.Sprint(ps)+`;
`+cacheSQL+`
CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<60)
  INSERT INTO kv SELECT i, zeroblob(100000) FROM c;
DELETE FROM kv WHERE id > 10;
.print @before
PRAGMA cambium_version;
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 100 UNION ALL SELECT i+1 FROM c WHERE i<140)
  INSERT INTO kv SELECT i, printf('SECRET-ROLLED-BACK-%d', i) || randomblob(100000) FROM c;
ROLLBACK;
.print @after
PRAGMA cambium_version;
.print @rows
SELECT count(*) FROM kv;
.print @integrity
PRAGMA integrity_check;
`)
				if r.err != nil {
					t.Fatalf("shell: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
				}
				s := sections(r.stdout)
				if before, after := one(t, s, "before"), one(t, s, "after"); before != after {
					t.Fatalf("the rollback moved the version from %s to %s", before, after)
				}
				if got := one(t, s, "rows"); got != "10" {
					t.Fatalf("%s rows after the rollback, want 10", got)
				}
				if got := one(t, s, "integrity"); got != "ok" {
					t.Fatalf("integrity_check: %s", strings.Join(s["integrity"], "\n"))
				}
				if n := pagesContaining(t, dir, "r.db", []byte("SECRET-ROLLED-BACK")); n > 0 {
					t.Fatalf("%d pages of the volume hold bytes of the rolled-back transaction", n)
				}
			})
		}
	}
}

// pagesContaining counts the pages of volume name's newest version in data
// directory dir that contain marker. No other process may have dir open.
func pagesContaining(t testing.TB, dir, name string, marker []byte) (pages int) {
	t.Helper()
	e, err := engine.Open(engine.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	vol, err := e.Volume(name)
	if err != nil {
		t.Fatal(err)
	}
	snap := vol.Snapshot()
	defer snap.Release()
	var buf []byte
	for p := engine.PageNo(1); p <= engine.PageNo(snap.PageCount()); p++ {
		if buf, err = snap.ReadPage(p, buf[:0]); err != nil {
			t.Fatalf("read page %d of %s: %v", p, name, err)
		}
		if bytes.Contains(buf, marker) {
			pages++
		}
	}
	return pages
}
