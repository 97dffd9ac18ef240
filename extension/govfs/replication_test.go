package govfs_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/cambiumdb/cambium/internal/testminio"
	_ "github.com/cambiumdb/cambium/remote/s3" // the tests replicate through s3:// too
)

func TestMain(m *testing.M) { testminio.Main(m) }

// remotes returns the remote URLs every replication test runs against: a
// local directory and a bucket on a real S3-compatible server.
func remotes(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"file": func(t *testing.T) string { return "file://" + filepath.Join(t.TempDir(), "remote") },
		"minio": func(t *testing.T) string {
			srv := testminio.Shared(t)
			srv.Env(t)
			return "s3://" + srv.NewBucket(t) + "/cambium"
		},
	}
}

// openRemote opens volume name in its own data directory dir, replicating
// with remoteURL.
func openRemote(t testing.TB, dir, name, remoteURL, params string) *sql.DB {
	t.Helper()
	return openDB(t, dir, name, "&remote="+url.QueryEscape(remoteURL)+params)
}

// pragmaJSON runs a cambium pragma and decodes its JSON result.
func pragmaJSON(t testing.TB, db *sql.DB, pragma string) map[string]any {
	t.Helper()
	var s string
	if err := db.QueryRow("PRAGMA " + pragma).Scan(&s); err != nil {
		t.Fatalf("PRAGMA %s: %v", pragma, err)
	}
	out := map[string]any{}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("PRAGMA %s: %q is not JSON: %v", pragma, s, err)
	}
	return out
}

// tableDigest returns a digest of every row of items, in id order.
func tableDigest(t testing.TB, db *sql.DB) string {
	t.Helper()
	var n int
	var sum string
	err := db.QueryRow(`SELECT count(*), coalesce(sum(qty), 0) || ':' || coalesce(group_concat(hex(substr(body, 1, 8)), ''), '') FROM (SELECT * FROM items ORDER BY id)`).Scan(&n, &sum)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d rows %s", n, sum)
}

// TestReplication_SQL: a writer pushes, a reader in its own data
// directory pulls and sees every row; a transaction open across the pull
// keeps its snapshot; the pragmas report what moved.
func TestReplication_SQL(t *testing.T) {
	for name, newRemote := range remotes(t) {
		t.Run(name, func(t *testing.T) {
			rem := newRemote(t)
			w := openRemote(t, t.TempDir(), "tenant/1.db", rem, "")
			w.SetMaxOpenConns(1)
			mustExec(t, w, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
			mustExec(t, w, `INSERT INTO items SELECT value, value*2, randomblob(300) FROM generate_series(1, 2000)`)
			if st := pragmaJSON(t, w, "cambium_status"); st["state"] != "ahead" || st["remote"] != rem {
				t.Fatalf("writer status before push: %v", st)
			}
			push := pragmaJSON(t, w, "cambium_push")
			if push["to"].(float64) <= push["from"].(float64) || push["remote_bytes_written"].(float64) <= 0 {
				t.Fatalf("push: %v", push)
			}
			if st := pragmaJSON(t, w, "cambium_status"); st["state"] != "synced" || st["pushed_version"] != st["version"] {
				t.Fatalf("writer status after push: %v", st)
			}

			r := openRemote(t, t.TempDir(), "tenant/1.db", rem, "")
			r.SetMaxOpenConns(2)
			if got, want := tableDigest(t, r), tableDigest(t, w); got != want {
				t.Fatalf("reader sees %s, writer %s", got, want)
			}

			// A reader transaction open across a pull keeps its version.
			tx, err := r.Begin()
			if err != nil {
				t.Fatal(err)
			}
			var before int
			if err := tx.QueryRow(`SELECT count(*) FROM items`).Scan(&before); err != nil {
				t.Fatal(err)
			}
			mustExec(t, w, `INSERT INTO items SELECT value, 1, randomblob(300) FROM generate_series(2001, 2100)`)
			mustExec(t, w, `UPDATE items SET qty = qty + 1 WHERE id % 7 = 0`)
			pragmaJSON(t, w, "cambium_push")
			if f := pragmaJSON(t, r, "cambium_fetch"); f["remote_version"].(float64) <= f["version"].(float64) {
				t.Fatalf("fetch: %v", f)
			}
			if st := pragmaJSON(t, r, "cambium_status"); st["state"] != "behind" {
				t.Fatalf("reader status after fetch: %v", st)
			}
			pull := pragmaJSON(t, r, "cambium_pull")
			if pull["to"].(float64) <= pull["from"].(float64) || pull["pages_changed"].(float64) < 1 {
				t.Fatalf("pull: %v", pull)
			}
			var during int
			if err := tx.QueryRow(`SELECT count(*) FROM items`).Scan(&during); err != nil {
				t.Fatal(err)
			}
			if during != before {
				t.Fatalf("a transaction open across the pull saw %d rows, then %d", before, during)
			}
			tx.Rollback()
			if got, want := tableDigest(t, r), tableDigest(t, w); got != want {
				t.Fatalf("after pull, reader sees %s, writer %s", got, want)
			}
			var ok string
			if err := r.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
				t.Fatalf("integrity_check on the reader: %q %v", ok, err)
			}
			if st := pragmaJSON(t, r, "cambium_stats"); st["remote_requests"].(float64) < 1 || st["frames_fetched"].(float64) < 1 {
				t.Fatalf("reader stats: %v", st)
			}
			// A reader cannot write what it would then fail to push? It
			// can: it becomes the writer. Its write and push reach the
			// first writer's pull.
			mustExec(t, r, `UPDATE items SET qty = -1 WHERE id = 1`)
			pragmaJSON(t, r, "cambium_push")
			pragmaJSON(t, w, "cambium_pull")
			var qty int
			if err := w.QueryRow(`SELECT qty FROM items WHERE id = 1`).Scan(&qty); err != nil || qty != -1 {
				t.Fatalf("writer after pulling the reader's push: qty %d, %v", qty, err)
			}
		})
	}
}

// TestReplication_TimeTravel: version=N reads exactly the rows of version
// N, locally and on a cold replica.
func TestReplication_TimeTravel(t *testing.T) {
	rem := "file://" + filepath.Join(t.TempDir(), "remote")
	wdir := t.TempDir()
	w := openRemote(t, wdir, "tt.db", rem, "")
	w.SetMaxOpenConns(1)
	mustExec(t, w, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
	type point struct {
		version float64
		digest  string
		after   time.Time // after the version was committed, before the next
	}
	var points []point
	before := time.Now()
	for i := range 5 {
		mustExec(t, w, fmt.Sprintf(`INSERT INTO items SELECT value, %d, randomblob(100) FROM generate_series(%d, %d)`, i, i*100+1, i*100+100))
		mustExec(t, w, fmt.Sprintf(`UPDATE items SET qty = qty + %d WHERE id %% 3 = 0`, i))
		push := pragmaJSON(t, w, "cambium_push")
		points = append(points, point{push["to"].(float64), tableDigest(t, w), time.Now()})
	}
	cold := t.TempDir()
	for _, p := range points {
		for _, dir := range []string{wdir, cold} {
			db := openRemote(t, dir, "tt.db", rem, fmt.Sprintf("&version=%d", int(p.version)))
			if got := tableDigest(t, db); got != p.digest {
				t.Fatalf("version %v in %s: %s, want %s", p.version, dir, got, p.digest)
			}
			if _, err := db.Exec(`DELETE FROM items`); err == nil || !strings.Contains(strings.ToLower(err.Error()), "readonly") {
				t.Fatalf("write at a past version: %v, want a read-only error", err)
			}
			db.Close()
		}
	}
	// at=TIME opens the newest version committed at or before TIME.
	for _, p := range points {
		for _, dir := range []string{wdir, t.TempDir()} {
			db := openRemote(t, dir, "tt.db", rem, "&at="+url.QueryEscape(p.after.UTC().Format(time.RFC3339Nano)))
			if got := tableDigest(t, db); got != p.digest {
				t.Fatalf("at %s (after version %v) in %s: %s, want %s", p.after, p.version, dir, got, p.digest)
			}
			db.Close()
		}
	}
	db := openRemote(t, t.TempDir(), "tt.db", rem, "&at="+url.QueryEscape(before.Add(-time.Hour).UTC().Format(time.RFC3339)))
	if _, err := db.Exec(`SELECT 1`); err == nil || !strings.Contains(err.Error(), "no such version committed at or before") {
		t.Fatalf("open before the first version: %v", err)
	}
	db.Close()
	// A version inside one push's range is not a remote version.
	db = openRemote(t, cold, "tt.db", rem, fmt.Sprintf("&version=%d", int(points[1].version)-1))
	if _, err := db.Exec(`SELECT 1`); err == nil || !strings.Contains(err.Error(), "nearest remote versions") {
		t.Fatalf("open inside a push range: %v", err)
	}
}

// TestReplication_ColdLazy: a cold replica of a volume of at least 100 MB
// answers one indexed point query after downloading less than 1% of it.
func TestReplication_ColdLazy(t *testing.T) {
	rows := 100_000
	if testing.Short() {
		rows = 10_000
	}
	for name, newRemote := range remotes(t) {
		t.Run(name, func(t *testing.T) {
			rem := newRemote(t)
			w := openRemote(t, t.TempDir(), "big.db", rem, "")
			w.SetMaxOpenConns(1)
			mustExec(t, w, `CREATE TABLE items(id INTEGER PRIMARY KEY, k TEXT, qty INTEGER, body BLOB)`)
			mustExec(t, w, fmt.Sprintf(`INSERT INTO items SELECT value, 'key-' || value, value * 3, randomblob(1000) FROM generate_series(1, %d)`, rows))
			mustExec(t, w, `CREATE INDEX items_k ON items(k)`)
			st := pragmaJSON(t, w, "cambium_status")
			size := st["page_count"].(float64) * st["page_size"].(float64)
			if !testing.Short() && size < 100<<20 {
				t.Fatalf("volume is %.0f bytes, want at least 100 MB", size)
			}
			pragmaJSON(t, w, "cambium_push")

			r := openRemote(t, t.TempDir(), "big.db", rem, "")
			var qty int
			if err := r.QueryRow(`SELECT qty FROM items WHERE k = ?`, fmt.Sprintf("key-%d", rows/3)).Scan(&qty); err != nil || qty != rows/3*3 {
				t.Fatalf("point query on the cold replica: %d, %v", qty, err)
			}
			stats := pragmaJSON(t, r, "cambium_stats")
			read := stats["remote_bytes_read"].(float64)
			t.Logf("coldopen (SQL, %s): volume %.1f MB; open + one indexed point query read %.0f bytes (%.3f%%) in %.0f requests, %.0f frames",
				name, size/1e6, read, 100*read/size, stats["remote_requests"], stats["frames_fetched"])
			if read >= size/100 {
				t.Fatalf("the cold replica read %.0f bytes of a %.0f-byte volume, want under 1%%", read, size)
			}
		})
	}
}

// TestReplication_Diverged: two writers of one volume; the loser's writes
// are refused with an error that says what happened and what to do, its
// status says diverged, and cambium_reset makes it follow the winner.
func TestReplication_Diverged(t *testing.T) {
	for name, newRemote := range remotes(t) {
		t.Run(name, func(t *testing.T) {
			rem := newRemote(t)
			a := openRemote(t, t.TempDir(), "d.db", rem, "")
			a.SetMaxOpenConns(1)
			mustExec(t, a, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
			mustExec(t, a, `INSERT INTO items SELECT value, 0, randomblob(50) FROM generate_series(1, 100)`)
			pragmaJSON(t, a, "cambium_push")
			b := openRemote(t, t.TempDir(), "d.db", rem, "")
			b.SetMaxOpenConns(1)
			tableDigest(t, b)

			mustExec(t, a, `UPDATE items SET qty = 1`)
			mustExec(t, b, `UPDATE items SET qty = 2`)
			pragmaJSON(t, a, "cambium_push")
			var s string
			err := b.QueryRow(`PRAGMA cambium_push`).Scan(&s)
			if err == nil || !strings.Contains(err.Error(), "diverged") {
				t.Fatalf("the second push: %q %v, want a diverged error", s, err)
			}
			if st := pragmaJSON(t, b, "cambium_status"); st["state"] != "diverged" {
				t.Fatalf("loser status: %v", st)
			}
			log := captureLog(t)
			_, err = b.Exec(`UPDATE items SET qty = 3`)
			if !errors.Is(err, sqlite3.READONLY) || !strings.Contains(log.String(), "cambium_reset") || !strings.Contains(log.String(), "diverged") {
				t.Fatalf("a write on the diverged volume: %v, log %q; want SQLITE_READONLY and a log line naming cambium_reset", err, log.String())
			}
			var qty int
			if err := b.QueryRow(`SELECT qty FROM items WHERE id = 1`).Scan(&qty); err != nil || qty != 2 {
				t.Fatalf("the loser's own commit is not kept: %d %v", qty, err)
			}
			reset := pragmaJSON(t, b, "cambium_reset")
			if reset["discarded"].(float64) != 1 {
				t.Fatalf("reset: %v", reset)
			}
			if got, want := tableDigest(t, b), tableDigest(t, a); got != want {
				t.Fatalf("after reset the loser sees %s, the winner %s", got, want)
			}
			if err := b.QueryRow(`SELECT qty FROM items WHERE id = 1`).Scan(&qty); err != nil || qty != 1 {
				t.Fatalf("after reset: qty %d %v, want the winner's 1", qty, err)
			}
			mustExec(t, b, `UPDATE items SET qty = 4 WHERE id = 2`)
			pragmaJSON(t, b, "cambium_push")
			pragmaJSON(t, a, "cambium_pull")
			if got, want := tableDigest(t, a), tableDigest(t, b); got != want {
				t.Fatalf("after the loser's next push the winner sees %s, want %s", got, want)
			}
		})
	}
}

// TestReplication_CorruptSegment: a damaged segment is an I/O error that
// names the object, never wrong rows.
func TestReplication_CorruptSegment(t *testing.T) {
	root := filepath.Join(t.TempDir(), "remote")
	rem := "file://" + root
	w := openRemote(t, t.TempDir(), "c.db", rem, "")
	w.SetMaxOpenConns(1)
	mustExec(t, w, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
	mustExec(t, w, `INSERT INTO items SELECT value, value, randomblob(500) FROM generate_series(1, 500)`)
	pragmaJSON(t, w, "cambium_push")
	segs, _ := filepath.Glob(filepath.Join(root, "v", "c.db", "s", "*"))
	if len(segs) != 1 {
		t.Fatalf("segments: %v", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < len(b)-4096; i += 997 { // damage frames all over
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	log := captureLog(t)
	r := openRemote(t, t.TempDir(), "c.db", rem, "")
	var sum int
	err = r.QueryRow(`SELECT sum(qty) FROM items`).Scan(&sum)
	if !errors.Is(err, sqlite3.IOERR) {
		t.Fatalf("reading a corrupt segment: sum %d, %v; want an I/O error", sum, err)
	}
	// SQLite's error carries a code only; the log names the object.
	if want := "v/c.db/s/" + filepath.Base(segs[0]); !strings.Contains(log.String(), want) || !strings.Contains(log.String(), "corrupt") {
		t.Fatalf("the log does not name the corrupt object %s:\n%s", want, log.String())
	}
}

// captureLog sends the default logger to a buffer until the test ends.
func captureLog(t *testing.T) *syncBuffer {
	buf := &syncBuffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReplication_Sync: with sync=interval a writer pushes and a reader
// pulls in the background.
func TestReplication_Sync(t *testing.T) {
	rem := "file://" + filepath.Join(t.TempDir(), "remote")
	w := openRemote(t, t.TempDir(), "s.db", rem, "&sync=100ms")
	w.SetMaxOpenConns(1)
	mustExec(t, w, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
	mustExec(t, w, `INSERT INTO items VALUES (1, 1, x'00')`)
	r := openRemote(t, t.TempDir(), "s.db", rem, "&sync=100ms")
	deadline := time.Now().Add(30 * time.Second)
	for want := 1; want <= 3; want++ {
		if want > 1 {
			mustExec(t, w, fmt.Sprintf(`INSERT INTO items VALUES (%d, %d, x'00')`, want, want))
		}
		for {
			var n int
			err := r.QueryRow(`SELECT count(*) FROM items`).Scan(&n)
			if err == nil && n == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the reader never saw %d rows: %d, %v", want, n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestReplication_PageSize: a replica over a file remote that had the old
// page size pulls a VACUUM that changed it and reads every row (fetching
// the pages of the new size lazily), while a transaction it opened before
// the pull keeps reading the old version; remote time travel reads the
// versions on both sides of the change.
func TestReplication_PageSize(t *testing.T) {
	rem := "file://" + filepath.Join(t.TempDir(), "remote")
	w := openRemote(t, t.TempDir(), "ps.db", rem, "")
	w.SetMaxOpenConns(1)
	mustExec(t, w, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
	mustExec(t, w, `INSERT INTO items SELECT value, value % 7, randomblob(300) FROM generate_series(1, 2000)`)
	oldDigest := tableDigest(t, w)
	oldVersion := pragmaJSON(t, w, "cambium_push")["to"].(float64)

	r := openRemote(t, t.TempDir(), "ps.db", rem, "")
	r.SetMaxOpenConns(2)
	if got := tableDigest(t, r); got != oldDigest {
		t.Fatalf("replica before: %s, want %s", got, oldDigest)
	}
	pinned, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Rollback()
	var n, oldSum int
	if err := pinned.QueryRow(`SELECT count(*), sum(qty) FROM items`).Scan(&n, &oldSum); err != nil || n != 2000 {
		t.Fatalf("pinned read: %d, %v", n, err)
	}

	mustExec(t, w, `PRAGMA page_size=32768`)
	mustExec(t, w, `VACUUM`)
	mustExec(t, w, `UPDATE items SET qty = qty + 1 WHERE id % 5 = 0`)
	newDigest := tableDigest(t, w)
	newVersion := pragmaJSON(t, w, "cambium_push")["to"].(float64)

	pull := pragmaJSON(t, r, "cambium_pull")
	if pull["to"].(float64) != newVersion {
		t.Fatalf("pull: %v, want to %v", pull, newVersion)
	}
	if got := tableDigest(t, r); got != newDigest {
		t.Fatalf("replica after the pull: %s, want %s", got, newDigest)
	}
	if got := queryInt(t, r, "PRAGMA page_size"); got != 32768 {
		t.Fatalf("replica page_size %d, want 32768", got)
	}
	integrityOK(t, r)
	var sum int
	if err := pinned.QueryRow(`SELECT count(*), sum(qty) FROM items`).Scan(&n, &sum); err != nil || n != 2000 || sum != oldSum {
		t.Fatalf("pinned read after the pull: %d rows, sum %d, %v; want 2000, %d", n, sum, err, oldSum)
	}
	pinned.Rollback()

	for _, p := range []struct {
		version float64
		digest  string
		size    int64
	}{{oldVersion, oldDigest, 4096}, {newVersion, newDigest, 32768}} {
		db := openRemote(t, t.TempDir(), "ps.db", rem, fmt.Sprintf("&version=%d", int(p.version)))
		if got := tableDigest(t, db); got != p.digest {
			t.Fatalf("version %v: %s, want %s", p.version, got, p.digest)
		}
		if got := queryInt(t, db, "PRAGMA page_size"); got != p.size {
			t.Fatalf("version %v: page_size %d, want %d", p.version, got, p.size)
		}
		db.Close()
	}
}
