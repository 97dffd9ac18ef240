package govfs_test

// Invariant 1 of DESIGN.md for transactions that do not commit: a ROLLBACK,
// a failed statement followed by one, a savepoint rolled back and then the
// whole transaction, a connection closed mid-transaction. None makes a
// version, and no byte it wrote is in the volume, locally or in the remote,
// even when SQLite wrote pages before the end (its page cache was full)
// into pages it took from the freelist, which the rollback journal never
// restores.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/extension"
)

// rawConn opens volume name in dir through the cambium VFS as one raw
// SQLite connection (params: extra "&k=v"), closed when the test ends.
func rawConn(t testing.TB, dir, name, params string) *sqlite3.Conn {
	t.Helper()
	c, err := sqlite3.Open(fmt.Sprintf("file:%s?vfs=cambium&dir=%s%s", name, url.QueryEscape(dir), params))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rawExec(t testing.TB, c *sqlite3.Conn, q string) {
	t.Helper()
	if err := c.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// rawText returns the first column of the first row of q.
func rawText(t testing.TB, c *sqlite3.Conn, q string) string {
	t.Helper()
	st, _, err := c.Prepare(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer st.Close()
	if !st.Step() {
		t.Fatalf("%s: no row (%v)", q, st.Err())
	}
	return st.ColumnText(0)
}

func rawVersion(t testing.TB, c *sqlite3.Conn) string {
	t.Helper()
	return rawText(t, c, "PRAGMA cambium_version")
}

// volumeContains counts the pages of volume name's newest version in dir
// that contain marker.
func volumeContains(t testing.TB, dir, name string, marker []byte) (pages int) {
	t.Helper()
	n, err := volumePagesWith(dir, name, marker)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// volumePagesWith counts the pages of volume name's newest version in dir
// that contain marker, reading them through the engine as a plain file
// would hold them (the process shares the engine with its connections).
func volumePagesWith(dir, name string, marker []byte) (pages int, err error) {
	f, err := extension.OpenMain(name, extension.Config{Dir: dir}, extension.OpenFlags{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer f.Close()
	snap := f.Volume().Snapshot()
	defer snap.Release()
	var buf []byte
	for p := engine.PageNo(1); p <= engine.PageNo(snap.PageCount()); p++ {
		if buf, err = snap.ReadPage(p, buf[:0]); err != nil {
			return pages, fmt.Errorf("read page %d of %s: %w", p, name, err)
		}
		if bytes.Contains(buf, marker) {
			pages++
		}
	}
	return pages, nil
}

// TestRollback_FreelistPages is the reduced report of the bug: a table
// with free pages, then a transaction larger than SQLite's page cache that
// rolls back. At several page sizes and cache sizes, through a remote.
func TestRollback_FreelistPages(t *testing.T) {
	for _, ps := range []int{1024, 4096, 65536} {
		for _, cache := range []string{"10", "default"} {
			t.Run(fmt.Sprintf("page=%d/cache=%s", ps, cache), func(t *testing.T) {
				dir := t.TempDir()
				remote := "file://" + filepath.Join(t.TempDir(), "remote")
				c := rawConn(t, dir, "r.db", "&remote="+url.QueryEscape(remote))
				rawExec(t, c, fmt.Sprintf("PRAGMA page_size=%d", ps))
				if cache != "default" {
					rawExec(t, c, "PRAGMA cache_size="+cache)
				}
				rawExec(t, c, "CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB)")
				rawExec(t, c, `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<60)
					INSERT INTO kv SELECT i, zeroblob(100000) FROM c`)
				rawExec(t, c, "DELETE FROM kv WHERE id > 10")
				rawExec(t, c, "PRAGMA cambium_push")
				before := rawVersion(t, c)

				rawExec(t, c, "BEGIN")
				rawExec(t, c, `WITH RECURSIVE c(i) AS (SELECT 100 UNION ALL SELECT i+1 FROM c WHERE i<140)
					INSERT INTO kv SELECT i, printf('SECRET-ROLLED-BACK-%d', i) || randomblob(100000) FROM c`)
				rawExec(t, c, "ROLLBACK")

				if after := rawVersion(t, c); after != before {
					t.Fatalf("the rollback moved the version from %s to %s", before, after)
				}
				if n := rawText(t, c, "SELECT count(*) FROM kv"); n != "10" {
					t.Fatalf("%s rows after the rollback, want 10", n)
				}
				if s := rawText(t, c, "PRAGMA integrity_check"); s != "ok" {
					t.Fatalf("integrity_check: %s", s)
				}
				var push struct {
					From, To, Pages int64
				}
				if err := json.Unmarshal([]byte(rawText(t, c, "PRAGMA cambium_push")), &push); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(push.To) != before || push.Pages != 0 {
					t.Fatalf("push after the rollback: %+v, want nothing past version %s", push, before)
				}
				marker := []byte("SECRET-ROLLED-BACK")
				if n := volumeContains(t, dir, "r.db", marker); n > 0 {
					t.Fatalf("%d pages of the volume hold bytes of the rolled-back transaction", n)
				}
				// A replica that downloads every page of the remote's newest
				// version finds none either.
				replica := t.TempDir()
				rc := rawConn(t, replica, "r.db", "&remote="+url.QueryEscape(remote))
				rawExec(t, rc, "PRAGMA cambium_hydrate")
				if v := rawVersion(t, rc); v != before {
					t.Fatalf("replica at version %s, want %s", v, before)
				}
				if n := volumeContains(t, replica, "r.db", marker); n > 0 {
					t.Fatalf("%d pages of the remote's newest version hold bytes of the rolled-back transaction", n)
				}
			})
		}
	}
}

// rollbackMarker is written every 512 bytes of the rows of transactions
// that do not commit, so that every page holding any byte of them holds
// it whole.
func rollbackMarker(step int) []byte { return fmt.Appendf(nil, "<ROLLEDBACK%04d>", step) }

// rollbackRow returns n bytes: marker every 512 bytes (if any), random in
// between.
func rollbackRow(r *rand.Rand, marker []byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if marker != nil {
		for i := 0; i+len(marker) <= n; i += 512 {
			copy(b[i:], marker)
		}
	}
	return b
}

// TestRollback_Random mixes committed transactions (large inserts and
// deletes, so that the freelist fills and empties) with transactions that
// end without committing in every way SQLite has, at random page and cache
// sizes. After each of the latter, the version has not moved and no page
// of the volume holds a byte it wrote; the rows always equal a model.
func TestRollback_Random(t *testing.T) {
	steps := 80
	if testing.Short() {
		steps = 30
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0x5eed))
			ps := []int{512, 1024, 4096, 16384}[r.IntN(4)]
			cache := []int{5, 20, 200}[r.IntN(3)]
			dir := t.TempDir()
			open := func() *sqlite3.Conn {
				c := rawConn(t, dir, "rnd.db", "")
				rawExec(t, c, fmt.Sprintf("PRAGMA page_size=%d", ps))
				rawExec(t, c, fmt.Sprintf("PRAGMA cache_size=%d", cache))
				return c
			}
			c := open()
			rawExec(t, c, "CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
			model := map[int64][]byte{}
			insert := func(c *sqlite3.Conn, id int64, v []byte) error {
				st, _, err := c.Prepare("INSERT INTO kv(id, v) VALUES(?, ?)")
				if err != nil {
					return err
				}
				defer st.Close()
				st.BindInt64(1, id)
				st.BindBlob(2, v)
				return st.Exec()
			}
			nextID := int64(1)
			rolledBack := 0
			for step := range steps {
				marker := rollbackMarker(step)
				before := rawVersion(t, c)
				// rows inserts n rows of marked bytes (or unmarked, if
				// marker is nil) in the open transaction, recording them
				// in m if it is not nil.
				rows := func(n int, marker []byte, m map[int64][]byte) {
					for range n {
						v := rollbackRow(r, marker, 200+r.IntN(20*ps))
						if err := insert(c, nextID, v); err != nil {
							t.Fatalf("step %d: insert: %v", step, err)
						}
						if m != nil {
							m[nextID] = v
						}
						nextID++
					}
				}
				kind := r.IntN(7)
				switch kind {
				case 0, 1: // commit inserts
					rawExec(t, c, "BEGIN")
					rows(1+r.IntN(20), nil, model)
					rawExec(t, c, "COMMIT")
					continue
				case 2: // commit a delete of about half the rows: free pages
					rawExec(t, c, "BEGIN")
					for id := range model {
						if r.IntN(2) == 0 {
							rawExec(t, c, fmt.Sprintf("DELETE FROM kv WHERE id = %d", id))
							delete(model, id)
						}
					}
					rawExec(t, c, "COMMIT")
					continue
				case 3: // ROLLBACK, after deletes and updates too
					rawExec(t, c, "BEGIN")
					rows(5+r.IntN(40), marker, nil)
					rawExec(t, c, "DELETE FROM kv WHERE id % 3 = 0")
					rawExec(t, c, "UPDATE kv SET v = zeroblob(length(v)) WHERE id % 5 = 1")
					rows(r.IntN(10), marker, nil)
					rawExec(t, c, "ROLLBACK")
				case 4: // ROLLBACK TO a savepoint, more work, ROLLBACK
					rawExec(t, c, "BEGIN")
					rows(r.IntN(10), marker, nil)
					rawExec(t, c, "SAVEPOINT s")
					rows(5+r.IntN(30), marker, nil)
					rawExec(t, c, "ROLLBACK TO s")
					rows(r.IntN(10), marker, nil)
					rawExec(t, c, "RELEASE s")
					rawExec(t, c, "ROLLBACK")
				case 5: // a statement that fails half way, then ROLLBACK
					rawExec(t, c, "BEGIN")
					rows(r.IntN(5), marker, nil)
					existing := nextID
					rows(1, nil, nil)
					// Rows existing+1 .. existing+40, the 30th of which
					// reuses an id: the statement writes 29 rows, then fails.
					err := c.Exec(fmt.Sprintf(`WITH RECURSIVE c(i) AS (SELECT %d UNION ALL SELECT i+1 FROM c WHERE i < %d)
						INSERT INTO kv SELECT CASE WHEN i = %d THEN %d ELSE i END, CAST('%s' AS BLOB) || randomblob(%d) FROM c`,
						existing+1, existing+40, existing+30, existing, marker, 2*ps))
					nextID = existing + 41
					if err == nil {
						t.Fatalf("step %d: the insert over an existing id succeeded", step)
					}
					rawExec(t, c, "ROLLBACK")
				case 6: // the connection closes in the middle of a transaction
					rawExec(t, c, "BEGIN")
					rows(5+r.IntN(40), marker, nil)
					if err := c.Close(); err != nil {
						t.Fatalf("step %d: close: %v", step, err)
					}
					c = open()
				}
				rolledBack++
				if after := rawVersion(t, c); after != before {
					t.Fatalf("step %d (kind %d): a transaction that did not commit moved the version from %s to %s", step, kind, before, after)
				}
				if n := volumeContains(t, dir, "rnd.db", marker); n > 0 {
					t.Fatalf("step %d (kind %d): %d pages of the volume hold bytes of a transaction that did not commit", step, kind, n)
				}
			}
			if s := rawText(t, c, "PRAGMA integrity_check"); s != "ok" {
				t.Fatalf("integrity_check: %s", s)
			}
			st, _, err := c.Prepare("SELECT id, v FROM kv ORDER BY id")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			seen := 0
			for st.Step() {
				id := st.ColumnInt64(0)
				if want, ok := model[id]; !ok || !bytes.Equal(st.ColumnBlob(1, nil), want) {
					t.Fatalf("row %d: in the model %v, bytes differ or should not exist", id, ok)
				}
				seen++
			}
			if err := st.Err(); err != nil || seen != len(model) {
				t.Fatalf("%d rows, the model has %d (%v)", seen, len(model), err)
			}
			t.Logf("page size %d, cache %d pages: %d transactions did not commit, %d rows", ps, cache, rolledBack, len(model))
		})
	}
}

// TestRollback_JournalModes: in every journal mode SQLite lets a Cambium
// database take, a COMMIT makes one version and a ROLLBACK none, and the
// rows after the rollback are those before it. With journal_mode=OFF,
// where SQLite itself cannot roll back, the volume still does.
func TestRollback_JournalModes(t *testing.T) {
	for _, mode := range []string{"memory", "off", "delete", "truncate", "persist"} {
		t.Run(mode, func(t *testing.T) {
			c := rawConn(t, t.TempDir(), "j.db", "")
			rawExec(t, c, "PRAGMA cache_size=10")
			got := rawText(t, c, "PRAGMA journal_mode="+mode)
			rawExec(t, c, "CREATE TABLE kv(id INTEGER PRIMARY KEY, v BLOB)")
			rawExec(t, c, `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<40)
				INSERT INTO kv SELECT i, zeroblob(20000) FROM c`)
			rawExec(t, c, "DELETE FROM kv WHERE id > 10")
			before := rawVersion(t, c)
			rawExec(t, c, "BEGIN")
			rawExec(t, c, "UPDATE kv SET v = randomblob(20000)")
			rawExec(t, c, `WITH RECURSIVE c(i) AS (SELECT 100 UNION ALL SELECT i+1 FROM c WHERE i<160)
				INSERT INTO kv SELECT i, CAST('<JOURNAL-ROLLBACK>' AS BLOB) || randomblob(20000) FROM c`)
			rawExec(t, c, "ROLLBACK")
			if after := rawVersion(t, c); after != before {
				t.Fatalf("journal_mode=%s (SQLite says %s): the rollback moved the version from %s to %s", mode, got, before, after)
			}
			if s := rawText(t, c, "SELECT count(*) || ' ' || sum(length(v)) || ' ' || sum(v = zeroblob(20000)) FROM kv"); s != "10 200000 10" {
				t.Fatalf("journal_mode=%s (SQLite says %s): after the rollback, rows, bytes and untouched rows are %s, want 10 200000 10", mode, got, s)
			}
			if s := rawText(t, c, "PRAGMA integrity_check"); s != "ok" {
				t.Fatalf("integrity_check: %s", s)
			}
			rawExec(t, c, "INSERT INTO kv VALUES(11, x'01')")
			if after := rawVersion(t, c); after == before {
				t.Fatalf("journal_mode=%s: a committed insert made no version", mode)
			}
		})
	}
}
