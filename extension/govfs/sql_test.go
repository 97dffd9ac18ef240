package govfs_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cambiumdb/cambium/engine"
	"github.com/ncruces/go-sqlite3"
)

func mustExec(t testing.TB, db interface {
	Exec(string, ...any) (sql.Result, error)
}, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func queryString(t testing.TB, db *sql.DB, q string, args ...any) string {
	t.Helper()
	var s string
	if err := db.QueryRow(q, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

func queryInt(t testing.TB, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// digest summarises every row, so that two databases can be compared.
const digestQuery = `SELECT count(*) || ':' || coalesce(sum(id), 0) || ':' || coalesce(sum(qty), 0) || ':' ||
	coalesce(sum(length(body)), 0) || ':' || coalesce(sum(unicode(substr(body, 1 + id % 97, 1))), 0) FROM items`

func integrityOK(t testing.TB, db *sql.DB) {
	t.Helper()
	if s := queryString(t, db, "PRAGMA integrity_check"); s != "ok" {
		t.Fatalf("integrity_check: %s", s)
	}
}

// TestSQL_PageSizes runs the same life of a database at every page size
// SQLite has: tables and indexes, blobs far larger than a page (overflow
// chains), updates, deletes, VACUUM, reopening.
func TestSQL_PageSizes(t *testing.T) {
	for ps := 512; ps <= 65536; ps *= 2 {
		t.Run(fmt.Sprintf("page=%d", ps), func(t *testing.T) {
			dir := t.TempDir()
			db := openDB(t, dir, "sizes.db", "")
			db.SetMaxOpenConns(1)
			mustExec(t, db, fmt.Sprintf("PRAGMA page_size=%d", ps))
			mustExec(t, db, "CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)")
			mustExec(t, db, "CREATE INDEX items_qty ON items(qty)")
			// Bodies from 10 bytes to 3 pages: many rows spill into overflow chains.
			mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)
				INSERT INTO items SELECT i, i % 17, randomblob(10 + (i * 7919) % (3 * ?)) FROM n`, ps)
			if got := queryInt(t, db, "PRAGMA page_size"); got != int64(ps) {
				t.Fatalf("page_size %d, want %d", got, ps)
			}
			mustExec(t, db, "UPDATE items SET qty = qty + 100, body = body || randomblob(?) WHERE id % 3 = 0", ps)
			mustExec(t, db, "DELETE FROM items WHERE id % 5 = 0")
			mustExec(t, db, "INSERT INTO items(qty, body) VALUES (7, zeroblob(?))", 5*ps)
			integrityOK(t, db)
			before := queryString(t, db, digestQuery)
			pagesBefore := queryInt(t, db, "PRAGMA page_count")
			mustExec(t, db, "DELETE FROM items WHERE id % 2 = 0")
			afterDelete := queryString(t, db, digestQuery)
			mustExec(t, db, "VACUUM")
			integrityOK(t, db)
			if got := queryString(t, db, digestQuery); got != afterDelete {
				t.Fatalf("VACUUM changed the rows: %s, want %s", got, afterDelete)
			}
			if got := queryInt(t, db, "PRAGMA page_count"); got >= pagesBefore {
				t.Fatalf("VACUUM left %d pages of %d", got, pagesBefore)
			}
			if qp := queryString(t, db, "SELECT count(*) || ',' || sum(qty) FROM items WHERE qty BETWEEN 100 AND 110"); qp == "" {
				t.Fatal("index query returned nothing")
			}
			db.Close()

			db = openDB(t, dir, "sizes.db", "")
			integrityOK(t, db)
			if got := queryString(t, db, digestQuery); got != afterDelete {
				t.Fatalf("after reopen: %s, want %s (before the deletes: %s)", got, afterDelete, before)
			}
		})
	}
}

// TestSQL_LargeDatabase builds a database many times larger than SQLite's
// page cache (2 MB by default) in several transactions, one of them large,
// reopens it, and reads it all back.
func TestSQL_LargeDatabase(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "large.db", "")
	mustExec(t, db, "CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)")
	rows := 40000
	if testing.Short() {
		rows = 8000
	}
	// One transaction far larger than the page cache, so SQLite spills and
	// writes through the journal path, then many small ones.
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO items SELECT i, i % 1000, randomblob(960) FROM n`, rows/2)
	for i := rows/2 + 1; i <= rows; i += 500 {
		mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i+1 FROM n WHERE i < ?)
			INSERT INTO items SELECT i, i % 1000, randomblob(960) FROM n`, i, i+499)
	}
	mustExec(t, db, "CREATE INDEX items_qty ON items(qty)")
	size := queryInt(t, db, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size")
	if size < 5*(2<<20) {
		t.Fatalf("database is only %d bytes", size)
	}
	want := queryString(t, db, digestQuery)
	db.Close()

	db = openDB(t, dir, "large.db", "")
	integrityOK(t, db)
	if got := queryString(t, db, digestQuery); got != want {
		t.Fatalf("after reopen: %s, want %s", got, want)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM items WHERE qty = 7"); n != int64(rows/1000) {
		t.Fatalf("index lookup found %d rows, want %d", n, rows/1000)
	}
	t.Logf("%d rows, %d MB", rows, size>>20)
}

// TestSQL_CachesSeeOtherConnections: a connection's page cache must not
// serve pages another connection has since changed.
func TestSQL_CachesSeeOtherConnections(t *testing.T) {
	dir := t.TempDir()
	a := openDB(t, dir, "shared.db", "")
	b := openDB(t, dir, "shared.db", "")
	mustExec(t, a, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO kv VALUES (1, 'one')")
	for i := range 50 {
		if got := queryString(t, b, "SELECT v FROM kv WHERE k = 1"); got != fmt.Sprint("one", strings.Repeat("!", i)) {
			t.Fatalf("round %d: b read %q", i, got)
		}
		mustExec(t, a, "UPDATE kv SET v = v || '!' WHERE k = 1")
	}
}

// TestSQL_ChangeCounter: a commit stores the pages it changed, not page 1
// for SQLite's change counter alone; yet every commit still changes the
// counter other connections read (PRAGMA data_version says they saw it).
func TestSQL_ChangeCounter(t *testing.T) {
	dir := t.TempDir()
	a := openDB(t, dir, "counter.db", "")
	b := openDB(t, dir, "counter.db", "")
	b.SetMaxOpenConns(1)
	mustExec(t, a, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER)")
	mustExec(t, a, "INSERT INTO kv VALUES (1, 0)")
	const updates = 20
	seen := queryInt(t, b, "PRAGMA data_version")
	for i := 1; i <= updates; i++ {
		mustExec(t, a, "UPDATE kv SET v = v + 1")
		dv := queryInt(t, b, "PRAGMA data_version")
		if dv == seen {
			t.Fatalf("update %d: another connection's data_version stayed %d", i, dv)
		}
		seen = dv
		if got := queryInt(t, b, "SELECT v FROM kv"); got != int64(i) {
			t.Fatalf("update %d: another connection read %d", i, got)
		}
	}
	// A write transaction whose changes cancel out makes no version, though
	// SQLite counted one: b must not take the next version for the one it
	// counted and keep its cache.
	tx, err := b.Begin()
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, tx, "UPDATE kv SET v = -1")
	mustExec(t, tx, fmt.Sprintf("UPDATE kv SET v = %d", updates))
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "UPDATE kv SET v = v + 1")
	if got := queryInt(t, b, "SELECT v FROM kv"); got != updates+1 {
		t.Fatalf("after a transaction that changed nothing and another connection's update, b read %d, want %d", got, updates+1)
	}
	if got := queryString(t, a, "PRAGMA integrity_check"); got != "ok" {
		t.Fatalf("integrity_check: %s", got)
	}
	a.Close()
	b.Close()

	e, err := engine.Open(engine.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v, err := e.Volume("counter.db")
	if err != nil {
		t.Fatal(err)
	}
	log, err := v.Log()
	if err != nil || len(log) < updates {
		t.Fatalf("%d commits, %v", len(log), err)
	}
	for _, c := range log[len(log)-updates-1:] {
		if c.PagesChanged != 1 {
			t.Fatalf("version %d stored %d pages for an update of one row in a one-page table", c.Version, c.PagesChanged)
		}
	}
}

// TestSQL_BadInput: bad names, settings and pragmas are clear errors.
func TestSQL_BadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, params, query, want string
	}{
		{"a/../b", "", "CREATE TABLE x(y)", `".." path part`},
		{"a//b", "", "CREATE TABLE x(y)", "empty path part"},
		{"./a", "", "CREATE TABLE x(y)", `"." path part`},
		{"ok.db", "&dri=" + dir, "CREATE TABLE x(y)", `unknown URI parameter "dri"`},
		{"ok.db", "&remote=ftp://host/x", "CREATE TABLE x(y)", `unknown scheme "ftp"`},
		{"ok.db", "&remote=somewhere", "CREATE TABLE x(y)", "want file:///absolute/path"},
		{"ok.db", "&remote=file://relative/x", "CREATE TABLE x(y)", "want file:///absolute/path"},
		{"ok.db", "&sync=fast", "CREATE TABLE x(y)", `sync="fast": want manual or an interval`},
		{"ok.db", "&sync=5s", "CREATE TABLE x(y)", "needs a remote"},
		{"ok.db", "&retain=7d", "CREATE TABLE x(y)", `retain="7d": want a duration in h, m or s, such as 24h, 90m or 0s (the newest version only), or forever`},
		{"ok.db", "&retain=-1h", "CREATE TABLE x(y)", `retain="-1h": want a duration`},
		{"ok.db", "&min_age=10s", "CREATE TABLE x(y)", `min_age="10s": want a duration of at least 1m`},
		{"ok.db", "&min_age=forever", "CREATE TABLE x(y)", `min_age="forever": want a duration`},
		{"ok.db", "&version=99", "SELECT 1 FROM sqlite_master", "no such version"},
		{"ok.db", "", "PRAGMA cambium_push", "no remote"},
		{"ok.db", "", "PRAGMA cambium_pull", "no remote"},
		{"ok.db", "", "PRAGMA cambium_gc", "no remote"},
		{"ok.db", "&_pragma=busy_timeout(10)&dri=x", "CREATE TABLE x(y)", `unknown URI parameter "dri"`},
		{"ok.db", "&version=x", "CREATE TABLE x(y)", "version"},
		{"ok.db", "&at=yesterday", "CREATE TABLE x(y)", "RFC 3339"},
		{"ok.db", "&version=1&at=2026-01-01T00:00:00Z", "CREATE TABLE x(y)", "pass one"},
		{"ok.db", "", "PRAGMA cambium_nope", "unknown pragma cambium_nope; Cambium knows cambium_version, cambium_status, cambium_stats, cambium_push"},
		{"ok.db", "", "PRAGMA cambium_version=3", "takes no value"},
	}
	for _, c := range cases {
		t.Run(c.name+c.params+"/"+c.query, func(t *testing.T) {
			db := openDB(t, dir, c.name, c.params)
			_, err := db.Exec(c.query)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	t.Run("ControlByte", func(t *testing.T) {
		db := openDB(t, dir, "bad%01name", "")
		if _, err := db.Exec("CREATE TABLE x(y)"); err == nil || !strings.Contains(err.Error(), "control byte") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ReadOnlyMissing", func(t *testing.T) {
		db := openDB(t, dir, "missing.db", "&mode=ro")
		if _, err := db.Exec("SELECT 1 FROM sqlite_master"); err == nil || !strings.Contains(err.Error(), "no such volume") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ReadOnlyWrite", func(t *testing.T) {
		mustExec(t, openDB(t, dir, "ro.db", ""), "CREATE TABLE x(y)")
		db := openDB(t, dir, "ro.db", "&mode=ro")
		_, err := db.Exec("INSERT INTO x VALUES (1)")
		if !errors.Is(err, sqlite3.READONLY) {
			t.Fatalf("got %v, want SQLITE_READONLY", err)
		}
	})
}

// TestSQL_Pragmas: the cambium_* pragmas report the volume.
func TestSQL_Pragmas(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "tenant/p.db", "")
	mustExec(t, db, "CREATE TABLE t(x)")
	mustExec(t, db, "INSERT INTO t VALUES (1)")
	if v := queryInt(t, db, "PRAGMA cambium_version"); v != 2 {
		t.Fatalf("cambium_version %d after two commits", v)
	}
	status := queryString(t, db, "PRAGMA cambium_status")
	for _, want := range []string{`"volume":"tenant/p.db"`, `"page_size":4096`, `"version":2`, `"state":"local-only"`, `"remote":""`, `"pushed_version":0`} {
		if !strings.Contains(status, want) {
			t.Fatalf("status %s lacks %s", status, want)
		}
	}
	stats := queryString(t, db, "PRAGMA cambium_stats")
	for _, key := range []string{"page_reads", "cache_hits", "pages_fetched", "frames_fetched", "remote_requests", "remote_bytes_read", "remote_bytes_written", `"commits":2`} {
		if !strings.Contains(stats, key) {
			t.Fatalf("stats %s lacks %s", stats, key)
		}
	}
}

// TestSQL_DriverParameters: a driver's own URI parameters pass through.
func TestSQL_DriverParameters(t *testing.T) {
	db := openDB(t, t.TempDir(), "drv.db", "&_pragma=busy_timeout(1234)&_txlock=immediate")
	mustExec(t, db, "CREATE TABLE x(y)")
	if got := queryInt(t, db, "PRAGMA busy_timeout"); got != 1234 {
		t.Fatalf("busy_timeout %d: the driver's _pragma did not apply", got)
	}
}

// TestSQL_LargeTransactions: transactions larger than the engine's spill
// threshold (32 MiB) that end as they began, by ROLLBACK or by changing
// everything back, leave exactly the old rows.
func TestSQL_LargeTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("writes over 100 MB")
	}
	dir := t.TempDir()
	db := openDB(t, dir, "big.db", "")
	db.SetMaxOpenConns(1)
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER, v BLOB)")
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 16000)
		INSERT INTO t SELECT i, 1000, randomblob(3000) FROM n`)
	want := queryString(t, db, "SELECT count(*) || ':' || sum(x) || ':' || sum(unicode(substr(v, 1 + id % 2999, 1))) FROM t")

	mustExec(t, db, "BEGIN")
	mustExec(t, db, "UPDATE t SET v = zeroblob(3000)")
	mustExec(t, db, "ROLLBACK")
	if got := queryString(t, db, "SELECT count(*) || ':' || sum(x) || ':' || sum(unicode(substr(v, 1 + id % 2999, 1))) FROM t"); got != want {
		t.Fatalf("after a large ROLLBACK: %s, want %s", got, want)
	}
	mustExec(t, db, "BEGIN")
	mustExec(t, db, "UPDATE t SET x = x + 1")
	mustExec(t, db, "UPDATE t SET x = x - 1")
	mustExec(t, db, "COMMIT")
	if n := queryInt(t, db, "SELECT count(*) FROM t WHERE x != 1000"); n != 0 {
		t.Fatalf("after changing everything back: %d rows differ", n)
	}
	integrityOK(t, db)
	db.Close()
	db = openDB(t, dir, "big.db", "")
	if got := queryString(t, db, "SELECT count(*) || ':' || sum(x) || ':' || sum(unicode(substr(v, 1 + id % 2999, 1))) FROM t"); got != want {
		t.Fatalf("after reopen: %s, want %s", got, want)
	}
}

// TestSQL_LockingModeExclusive is refused: such a connection never leaves
// its write lock, so its commits would not become versions.
func TestSQL_LockingModeExclusive(t *testing.T) {
	db := openDB(t, t.TempDir(), "ex.db", "")
	if _, err := db.Exec("PRAGMA locking_mode=EXCLUSIVE"); err == nil || !strings.Contains(err.Error(), "locking_mode=EXCLUSIVE") {
		t.Fatalf("got %v", err)
	}
}

// TestSQL_JournalModeWAL: PRAGMA journal_mode=WAL, which apps run at every
// start, answers with the mode in force and no error, and the database
// works on: as SQLite answers it where WAL cannot be.
func TestSQL_JournalModeWAL(t *testing.T) {
	db := openDB(t, t.TempDir(), "wal.db", "")
	for range 2 {
		var mode string
		if err := db.QueryRow("PRAGMA journal_mode=WAL").Scan(&mode); err != nil || mode != "memory" {
			t.Fatalf("PRAGMA journal_mode=WAL: %q, %v; want memory", mode, err)
		}
	}
	if _, err := db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "memory" {
		t.Fatalf("PRAGMA journal_mode: %q, %v; want memory", mode, err)
	}
}

// TestSQL_VacuumPageSize: PRAGMA page_size=N followed by VACUUM changes the
// page size of a volume that has pages, larger and smaller, as it does a
// plain file: the rows stay, a second connection and a reopen see the new
// size, the volume's next version has it, and the version before the
// change still reads at the old size (version=N).
func TestSQL_VacuumPageSize(t *testing.T) {
	for _, sizes := range [][2]int{{4096, 16384}, {16384, 1024}, {1024, 65536}, {65536, 512}} {
		t.Run(fmt.Sprintf("%d-%d", sizes[0], sizes[1]), func(t *testing.T) {
			dir := t.TempDir()
			db := openDB(t, dir, "vac.db", "")
			db.SetMaxOpenConns(1)
			mustExec(t, db, fmt.Sprintf("PRAGMA page_size=%d", sizes[0]))
			mustExec(t, db, "CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)")
			mustExec(t, db, "CREATE INDEX items_qty ON items(qty)")
			mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 400)
				INSERT INTO items SELECT i, i % 13, randomblob(10 + (i * 7919) % 3000) FROM n`)
			want := queryString(t, db, digestQuery)
			before := queryInt(t, db, "PRAGMA cambium_version")

			other := openDB(t, dir, "vac.db", "")
			if got := queryString(t, other, digestQuery); got != want {
				t.Fatalf("second connection before: %s, want %s", got, want)
			}

			mustExec(t, db, fmt.Sprintf("PRAGMA page_size=%d", sizes[1]))
			mustExec(t, db, "VACUUM")
			if got := queryInt(t, db, "PRAGMA page_size"); got != int64(sizes[1]) {
				t.Fatalf("page_size after VACUUM: %d, want %d", got, sizes[1])
			}
			integrityOK(t, db)
			if got := queryString(t, db, digestQuery); got != want {
				t.Fatalf("after VACUUM: %s, want %s", got, want)
			}
			var status struct {
				PageSize int `json:"page_size"`
			}
			if err := json.Unmarshal([]byte(queryString(t, db, "PRAGMA cambium_status")), &status); err != nil || status.PageSize != sizes[1] {
				t.Fatalf("cambium_status page_size %d, %v; want %d", status.PageSize, err, sizes[1])
			}
			// Writes at the new size.
			mustExec(t, db, "UPDATE items SET qty = qty + 1 WHERE id % 7 = 0")
			mustExec(t, db, "INSERT INTO items(qty, body) VALUES (99, randomblob(5000))")
			after := queryString(t, db, digestQuery)

			// PRAGMA page_size reads no page: it says the size the
			// connection last read, as with a plain file.
			other.SetMaxOpenConns(1)
			if got := queryString(t, other, digestQuery); got != after {
				t.Fatalf("second connection after: %s, want %s", got, after)
			}
			if got := queryInt(t, other, "PRAGMA page_size"); got != int64(sizes[1]) {
				t.Fatalf("second connection: page_size %d, want %d", got, sizes[1])
			}
			integrityOK(t, other)

			old := openDB(t, dir, "vac.db", fmt.Sprintf("&version=%d", before))
			if got := queryInt(t, old, "PRAGMA page_size"); got != int64(sizes[0]) {
				t.Fatalf("version %d: page_size %d, want %d", before, got, sizes[0])
			}
			integrityOK(t, old)
			if got := queryString(t, old, digestQuery); got != want {
				t.Fatalf("version %d: %s, want %s", before, got, want)
			}
			db.Close()
			other.Close()

			db = openDB(t, dir, "vac.db", "")
			if got := queryInt(t, db, "PRAGMA page_size"); got != int64(sizes[1]) {
				t.Fatalf("after reopen: page_size %d, want %d", got, sizes[1])
			}
			integrityOK(t, db)
			if got := queryString(t, db, digestQuery); got != after {
				t.Fatalf("after reopen: %s, want %s", got, after)
			}
		})
	}
}
