//go:build unix

package govfs_test

// The crash test checks invariant 1 of DESIGN.md from outside the process:
// a child process (this test binary, re-executed to run TestCrashChild)
// commits a stream of transactions with synchronous=FULL and prints
// "ack <seq>" after each COMMIT returns; the parent SIGKILLs it at random
// moments and, after every kill, opens the volume itself and checks that
// SQLite finds it intact and that every acknowledged commit is there, whole.
//
// Every transaction is a pure function of (seed, seq): the child executes
// it as SQL, and the parent replays it on an in-memory model. So after a
// kill the volume must be exactly the model's state after some version
// max(seq) >= the last ack (a commit that was durable but not yet
// acknowledged when the kill came is allowed), never a mixture of two.
//
//	CAMBIUM_CRASH_KILLS=2000  more kill points (default 200)
//	CAMBIUM_CRASH_SEED=N      repeat a run's transactions (kill times stay random)

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver"

	_ "github.com/cambiumdb/cambium/extension/govfs"
)

const (
	crashChildEnv = "CAMBIUM_CRASH_CHILD" // the data directory; set only in the child
	crashSeedEnv  = "CAMBIUM_CRASH_SEED"
	crashKillsEnv = "CAMBIUM_CRASH_KILLS"
	crashSyncEnv  = "CAMBIUM_CRASH_SYNC" // NORMAL, or FULL when unset

	crashVolume  = "crash/t1.db"
	crashKeys    = 400 // kv ids are 1..crashKeys
	crashSlots   = 6   // blob slots 1..crashSlots; slot 0 holds the big blob
	crashPadSize = 96
)

const crashSchema = `
CREATE TABLE IF NOT EXISTS acks(seq INTEGER PRIMARY KEY, shape TEXT NOT NULL, digest TEXT NOT NULL,
	total INTEGER NOT NULL, nrows INTEGER NOT NULL, spilled INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv(id INTEGER PRIMARY KEY, val INTEGER NOT NULL, pad TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS kv_val ON kv(val);
CREATE TABLE IF NOT EXISTS blobs(slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bulk(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
`

// TestCrash is the parent: it runs, kills and checks the children, which
// commit with synchronous=FULL.
func TestCrash(t *testing.T) {
	runCrash(t, crashKills(t, 200))
}

// TestCrash_Normal does the same at synchronous=NORMAL, whose commits must
// survive the process being killed too (not a power loss, which this test
// cannot make).
func TestCrash_Normal(t *testing.T) {
	t.Setenv(crashSyncEnv, "NORMAL")
	runCrash(t, crashKills(t, 200)/4)
}

func crashKills(t *testing.T, def int) int {
	if s := os.Getenv(crashKillsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of kill points", crashKillsEnv, s)
		}
		return n
	}
	return def
}

func runCrash(t *testing.T, kills int) {
	seed := rand.Uint64()
	if s := os.Getenv(crashSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, s, err)
		}
		seed = n
	}
	t.Logf("seed %d (%s=%d repeats the transactions), page size %d", seed, crashSeedEnv, seed, crashPageSize(seed))

	dir := t.TempDir()
	r := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	model := newCrashModel(seed)
	var (
		start        = time.Now()
		lastAcked    int64 // highest seq any child acknowledged
		totalAcks    int
		earlyKills   int // kills before the child's first ack
		unackedKept  int // kills after which a durable but unacknowledged commit was found
		shapesSeen   = map[string]int{}
		childRuntime time.Duration
		checkTime    time.Duration
		firstAck     time.Duration // summed over the children that waited for one
		waited       int
	)
	for i := range kills {
		c := startCrashChild(t, dir, seed)
		var delay time.Duration
		fromStart := r.IntN(4) == 0
		switch {
		case fromStart:
			// Anywhere in the child's life, startup and recovery included.
			delay = time.Duration(5+r.IntN(56)) * time.Millisecond
		case r.IntN(10) == 0:
			delay = time.Duration(60+r.IntN(200)) * time.Millisecond // let big transactions get going
		default:
			delay = time.Duration(r.IntN(40)) * time.Millisecond
		}
		if !fromStart {
			// Make progress: wait until the child has committed something.
			if err := c.waitAck(60 * time.Second); err != nil {
				c.kill()
				t.Fatalf("kill %d: %v\n%s", i, err, c.report())
			}
			firstAck += time.Since(c.started)
			waited++
		}
		time.Sleep(delay)
		if err := c.kill(); err != nil {
			t.Fatalf("kill %d: %v\n%s", i, err, c.report())
		}
		childRuntime += time.Since(c.started)

		acks := c.acked()
		if len(acks) == 0 {
			earlyKills++
		}
		for j, seq := range acks {
			// A child resumes after the newest commit it finds, and acks in order.
			if want := model.seq + 1 + int64(j); seq != want {
				t.Fatalf("kill %d: child acked %d, want %d (acks %v)\n%s", i, seq, want, acks, c.report())
			}
		}
		if len(acks) > 0 {
			lastAcked = acks[len(acks)-1]
			totalAcks += len(acks)
		}

		prev := model.seq
		checkStart := time.Now()
		maxSeq, err := crashCheck(dir, model, lastAcked)
		checkTime += time.Since(checkStart)
		if err != nil {
			t.Fatalf("kill %d (%v after %s, child acked %v): %v\n%s", i, delay,
				map[bool]string{true: "start", false: "first ack"}[fromStart], crashSpan(acks), err, c.report())
		}
		if maxSeq > lastAcked {
			unackedKept++
		}
		for seq := prev + 1; seq <= maxSeq; seq++ {
			shapesSeen[crashTxnFor(seed, seq).shape]++
		}
		if (i+1)%50 == 0 {
			t.Logf("%d kills, %d commits, %v", i+1, maxSeq, time.Since(start).Round(time.Millisecond))
		}
	}
	spilledTxns, spilledPages, err := crashCheckAllAcks(dir, seed, model.seq)
	if err != nil {
		t.Fatal(err)
	}
	if model.seq == 0 {
		t.Fatalf("no transaction committed in %d kills", kills)
	}
	if big := shapesSeen["bigblob"] + shapesSeen["bulk"]; big > 0 && spilledTxns == 0 {
		t.Fatalf("%d big transactions committed, but none spilled SQLite's page cache: the test no longer covers pages written before the commit", big)
	}
	t.Logf("%d kills (%d before the child's first ack, %d found a durable unacked commit), %d acked commits, max seq %d, committed shapes %v",
		kills, earlyKills, unackedKept, totalAcks, model.seq, shapesSeen)
	t.Logf("%d committed transactions spilled SQLite's page cache (%d pages)", spilledTxns, spilledPages)
	rolledBack := map[string]int{}
	for seq := int64(1); seq <= model.seq; seq++ {
		if rb, ok := crashRollbackFor(seed, seq); ok {
			rolledBack[rb.shape]++
		}
	}
	if model.seq >= 100 && len(rolledBack) == 0 {
		t.Fatalf("%d transactions committed, and no transaction rolled back between them", model.seq)
	}
	t.Logf("transactions rolled back between commits, none leaving a byte in the volume: %v", rolledBack)
	t.Logf("elapsed %v: children ran %v (first ack after %v on average), checks took %v (%v each)",
		time.Since(start).Round(time.Millisecond), childRuntime.Round(time.Millisecond),
		(firstAck / time.Duration(max(waited, 1))).Round(time.Millisecond),
		checkTime.Round(time.Millisecond), (checkTime / time.Duration(kills)).Round(time.Millisecond))
}

// TestCrashChild is the child TestCrash runs; it does nothing unless
// CAMBIUM_CRASH_CHILD names its data directory. It commits transactions
// until it is killed, and exits with status 2 on any error.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		return
	}
	seed, err := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	if err == nil {
		err = crashChild(dir, seed)
	}
	fmt.Fprintf(os.Stderr, "crash child: %v\n", err)
	os.Exit(2)
}

func crashChild(dir string, seed uint64) error {
	ctx := context.Background()
	db, err := sql.Open("sqlite3", crashDSN(dir))
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	for _, q := range []string{
		fmt.Sprintf("PRAGMA page_size=%d", crashPageSize(seed)), // a no-op once the volume has pages
		"PRAGMA synchronous=" + crashSync(),
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	want := map[string]int{"FULL": 2, "NORMAL": 1}[crashSync()]
	var level int
	if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level); err != nil || level != want {
		return fmt.Errorf("PRAGMA synchronous is %d (%v), want %d (%s)", level, err, want, crashSync())
	}
	if err := crashInTx(ctx, conn, func(tx *sql.Tx) error {
		_, err := tx.Exec(crashSchema)
		return err
	}); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	var seq int64
	if err := conn.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM acks").Scan(&seq); err != nil {
		return err
	}
	for seq++; ; seq++ {
		if rb, ok := crashRollbackFor(seed, seq); ok {
			if err := rb.exec(ctx, conn, seed, seq); err != nil {
				return fmt.Errorf("rolled-back transaction before %d (%s): %w", seq, rb.shape, err)
			}
		}
		txn := crashTxnFor(seed, seq)
		if err := crashInTx(ctx, conn, func(tx *sql.Tx) error { return txn.exec(conn, tx, seed, seq) }); err != nil {
			return fmt.Errorf("transaction %d (%s): %w", seq, txn.shape, err)
		}
		// Only now is the commit acknowledged: one write(2), so a kill
		// leaves the line whole or absent.
		if _, err := os.Stdout.Write([]byte("ack " + strconv.FormatInt(seq, 10) + "\n")); err != nil {
			return err
		}
	}
}

func crashInTx(ctx context.Context, conn *sql.Conn, f func(*sql.Tx) error) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func crashDSN(dir string) string {
	var esc strings.Builder
	for _, c := range []byte(dir) {
		if c == '/' || c == '-' || c == '_' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			esc.WriteByte(c)
		} else {
			fmt.Fprintf(&esc, "%%%02X", c)
		}
	}
	return fmt.Sprintf("file:%s?vfs=cambium&dir=%s", crashVolume, esc.String())
}

// crashPageSize varies the page size between runs.
func crashPageSize(seed uint64) int {
	return []int{1024, 4096, 4096, 8192, 65536}[seed%5]
}

// Transactions.

type crashOpKind int

const (
	crashPut     crashOpKind = iota // kv[a] = d
	crashAdd                        // kv[id] += d for the ids in [a, b] that exist
	crashDel                        // delete kv ids in [a, b]
	crashBlob                       // blobs[a] = n bytes made from (seq, a)
	crashBlobDel                    // delete blobs[a]
	crashBulk                       // replace bulk with n rows made from (seq, i)
)

type crashOp struct {
	kind crashOpKind
	a, b int64
	d    int64
	n    int
}

type crashTxn struct {
	shape  string
	ops    []crashOp
	digest string // names (seq, shape, ops): the acks row must carry it
}

// crashTxnFor returns transaction seq: small single-row writes, multi-row
// updates, deletes, blobs (some overflowing 64 KiB), mixtures, and now and
// then 2-5 MB, enough to make SQLite spill its page cache mid-transaction.
func crashTxnFor(seed uint64, seq int64) crashTxn {
	r := rand.New(rand.NewPCG(seed, uint64(seq)))
	key := func() int64 { return 1 + r.Int64N(crashKeys) }
	span := func(n int64) (int64, int64) {
		a := key()
		return a, min(a+r.Int64N(n), crashKeys)
	}
	put := func() crashOp { return crashOp{kind: crashPut, a: key(), d: r.Int64N(2001) - 1000} }
	add := func(n int64) crashOp {
		a, b := span(n)
		return crashOp{kind: crashAdd, a: a, b: b, d: r.Int64N(21) - 10}
	}
	del := func(n int64) crashOp {
		a, b := span(n)
		return crashOp{kind: crashDel, a: a, b: b}
	}
	blob := func() crashOp {
		n := 1 + r.IntN(4096)
		switch r.IntN(3) {
		case 1:
			n = 4096 + r.IntN(60<<10)
		case 2:
			n = 64<<10 + 1 + r.IntN(256<<10) // overflow chains longer than 64 KiB
		}
		return crashOp{kind: crashBlob, a: 1 + r.Int64N(crashSlots), n: n}
	}
	blobDel := func() crashOp { return crashOp{kind: crashBlobDel, a: 1 + r.Int64N(crashSlots)} }

	var txn crashTxn
	switch x := r.IntN(100); {
	case x < 40:
		txn.shape, txn.ops = "small", []crashOp{put()}
	case x < 58:
		txn.shape, txn.ops = "update", []crashOp{add(200), put()}
	case x < 68:
		txn.shape, txn.ops = "delete", []crashOp{del(30), put()}
	case x < 82:
		txn.shape, txn.ops = "blob", []crashOp{blob(), put()}
	case x < 88:
		txn.shape, txn.ops = "blobdel", []crashOp{blobDel(), add(50)}
	case x < 96:
		txn.shape = "mixed"
		for range 5 + r.IntN(16) {
			txn.ops = append(txn.ops, []func() crashOp{put, put, func() crashOp { return add(100) },
				func() crashOp { return del(10) }, blob, blobDel}[r.IntN(6)]())
		}
	default:
		size := 2<<20 + r.IntN(3<<20)
		if r.IntN(2) == 0 {
			txn.shape, txn.ops = "bigblob", []crashOp{{kind: crashBlob, a: 0, n: size}, add(400)}
		} else {
			txn.shape, txn.ops = "bulk", []crashOp{{kind: crashBulk, n: size / 250}, put()}
		}
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%d %s %v", seq, txn.shape, txn.ops))
	txn.digest = hex.EncodeToString(sum[:8])
	return txn
}

// exec runs the transaction's statements in tx, on conn, ending with its
// acks row, which records the kv table's sum and row count as they are
// after it, and how many dirty pages SQLite spilled from its page cache
// before the commit.
func (txn crashTxn) exec(conn *sql.Conn, tx *sql.Tx, seed uint64, seq int64) error {
	spills0, err := crashCacheSpills(conn)
	if err != nil {
		return err
	}
	for _, op := range txn.ops {
		var err error
		switch op.kind {
		case crashPut:
			_, err = tx.Exec("INSERT OR REPLACE INTO kv(id, val, pad) VALUES(?, ?, ?)", op.a, op.d, crashPad(op.a))
		case crashAdd:
			_, err = tx.Exec("UPDATE kv SET val = val + ? WHERE id BETWEEN ? AND ?", op.d, op.a, op.b)
		case crashDel:
			_, err = tx.Exec("DELETE FROM kv WHERE id BETWEEN ? AND ?", op.a, op.b)
		case crashBlob:
			_, err = tx.Exec("INSERT OR REPLACE INTO blobs(slot, seq, data) VALUES(?, ?, ?)", op.a, seq, crashBytes(seed, seq, op.a, op.n))
		case crashBlobDel:
			_, err = tx.Exec("DELETE FROM blobs WHERE slot = ?", op.a)
		case crashBulk:
			err = crashExecBulk(tx, seed, seq, op.n)
		}
		if err != nil {
			return fmt.Errorf("op %+v: %w", op, err)
		}
	}
	spills, err := crashCacheSpills(conn)
	if err != nil {
		return err
	}
	_, err = tx.Exec("INSERT INTO acks(seq, shape, digest, total, nrows, spilled) SELECT ?, ?, ?, coalesce(sum(val), 0), count(*), ? FROM kv",
		seq, txn.shape, txn.digest, spills-spills0)
	return err
}

// Transactions that do not commit: before some transactions, the child
// runs one that ends in ROLLBACK, large enough to spill SQLite's page cache
// into pages taken from the freelist, which the rollback journal does not
// restore. Every row it writes holds crashRollbackMarker every 512 bytes;
// after every kill, no page of the volume may hold it.

var crashRollbackMarker = []byte("<CRASH-ROLLEDBACK>")

type crashRollback struct {
	shape string // rollback, savepoint (ROLLBACK TO, then ROLLBACK), failed (a statement fails, then ROLLBACK)
	rows  int    // rows of crashRollbackRow bytes written
}

// crashRollbackFor says whether a transaction that rolls back comes
// before transaction seq, and which.
func crashRollbackFor(seed uint64, seq int64) (crashRollback, bool) {
	r := rand.New(rand.NewPCG(seed^0x726f6c6c6261636b, uint64(seq)))
	if r.IntN(8) != 0 {
		return crashRollback{}, false
	}
	return crashRollback{shape: []string{"rollback", "savepoint", "failed"}[r.IntN(3)], rows: 200 + r.IntN(4000)}, true
}

func crashRollbackRow(seed uint64, seq int64, i int) []byte {
	b := crashBytes(seed, seq, 1<<40+int64(i), 300+i%700)
	for at := 0; at+len(crashRollbackMarker) <= len(b); at += 512 {
		copy(b[at:], crashRollbackMarker)
	}
	return b
}

// exec runs the transaction and rolls it back; it fails unless SQLite
// reports the rollback as done.
func (rb crashRollback) exec(ctx context.Context, conn *sql.Conn, seed uint64, seq int64) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	insert := func(from, to int) error {
		stmt, err := tx.Prepare("INSERT INTO bulk(id, data) VALUES(?, ?)")
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := from; i < to; i++ {
			if _, err := stmt.Exec(1<<30+i, crashRollbackRow(seed, seq, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := tx.Exec("UPDATE kv SET val = val + 1"); err != nil {
		return err
	}
	switch rb.shape {
	case "rollback":
		if err := insert(0, rb.rows); err != nil {
			return err
		}
	case "savepoint":
		if err := insert(0, rb.rows/2); err != nil {
			return err
		}
		for _, q := range []string{"SAVEPOINT s", "DELETE FROM blobs"} {
			if _, err := tx.Exec(q); err != nil {
				return err
			}
		}
		if err := insert(rb.rows/2, rb.rows); err != nil {
			return err
		}
		if _, err := tx.Exec("ROLLBACK TO s"); err != nil {
			return err
		}
	case "failed":
		if err := insert(0, rb.rows); err != nil {
			return err
		}
		// Copies every row written so far, then meets the first again.
		if _, err := tx.Exec("INSERT INTO bulk(id, data) SELECT id + 1000000, data FROM bulk WHERE id >= ? UNION ALL SELECT ?, x'00'", 1<<30, 1<<30); err == nil {
			return errors.New("an insert over an existing id succeeded")
		}
	}
	return tx.Rollback()
}

// crashCacheSpills returns how many dirty pages the connection has written
// to the database in the middle of a transaction because its page cache
// was full: the path where a transaction's pages reach the VFS before it
// commits.
func crashCacheSpills(conn *sql.Conn) (n int64, err error) {
	err = conn.Raw(func(dc any) error {
		raw, ok := dc.(interface{ Raw() *sqlite3.Conn })
		if !ok {
			return fmt.Errorf("driver connection %T has no Raw method", dc)
		}
		n, _, err = raw.Raw().Status(sqlite3.DBSTATUS_CACHE_SPILL, false)
		return err
	})
	return n, err
}

func crashExecBulk(tx *sql.Tx, seed uint64, seq int64, n int) error {
	if _, err := tx.Exec("DELETE FROM bulk"); err != nil {
		return err
	}
	stmt, err := tx.Prepare("INSERT INTO bulk(id, data) VALUES(?, ?)")
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := 1; i <= n; i++ {
		if _, err := stmt.Exec(i, crashBulkRow(seed, seq, i)); err != nil {
			return err
		}
	}
	return nil
}

func crashPad(id int64) string {
	return strings.Repeat(strconv.FormatInt(id, 36)+"-", crashPadSize)[:crashPadSize]
}

// crashBytes returns n pseudo-random bytes determined by (seed, seq, key).
func crashBytes(seed uint64, seq int64, key int64, n int) []byte {
	src := rand.NewPCG(seed^0x9e3779b97f4a7c15, uint64(seq)<<24^uint64(key))
	b := make([]byte, (n+7)&^7)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], src.Uint64())
	}
	return b[:n]
}

func crashBulkRow(seed uint64, seq int64, i int) []byte {
	return crashBytes(seed, seq, 1<<20+int64(i), 100+int((uint64(seq)*31+uint64(i)*17)%301))
}

// The parent's model and checks.

type crashBlobState struct {
	seq int64
	sum [32]byte
}

// crashModel is the database's expected contents after transaction seq.
type crashModel struct {
	seed    uint64
	seq     int64
	kv      map[int64]int64
	blobs   map[int64]crashBlobState
	bulkN   int
	bulkSum [32]byte
}

func newCrashModel(seed uint64) *crashModel {
	m := &crashModel{seed: seed, kv: map[int64]int64{}, blobs: map[int64]crashBlobState{}}
	m.bulkSum = crashBulkSum(nil)
	return m
}

func (m *crashModel) advance(to int64) {
	for m.seq < to {
		m.seq++
		for _, op := range crashTxnFor(m.seed, m.seq).ops {
			switch op.kind {
			case crashPut:
				m.kv[op.a] = op.d
			case crashAdd:
				for id := op.a; id <= op.b; id++ {
					if v, ok := m.kv[id]; ok {
						m.kv[id] = v + op.d
					}
				}
			case crashDel:
				for id := op.a; id <= op.b; id++ {
					delete(m.kv, id)
				}
			case crashBlob:
				m.blobs[op.a] = crashBlobState{seq: m.seq, sum: sha256.Sum256(crashBytes(m.seed, m.seq, op.a, op.n))}
			case crashBlobDel:
				delete(m.blobs, op.a)
			case crashBulk:
				rows := make([][]byte, op.n)
				for i := range rows {
					rows[i] = crashBulkRow(m.seed, m.seq, i+1)
				}
				m.bulkN, m.bulkSum = op.n, crashBulkSum(rows)
			}
		}
	}
}

func crashBulkSum(rows [][]byte) [32]byte {
	h := sha256.New()
	for _, row := range rows {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(row))))
		h.Write(row)
	}
	return [32]byte(h.Sum(nil))
}

// crashOpen opens the volume in this process; closing the *sql.DB closes
// the engine and frees the data directory for the next child.
func crashOpen(dir string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", crashDSN(dir))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// crashCheck opens the volume after a kill and checks it against the model,
// which it advances to the newest commit found. It returns that commit's seq.
func crashCheck(dir string, m *crashModel, lastAcked int64) (_ int64, err error) {
	db, err := crashOpen(dir)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()

	var problems []string
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		return 0, fmt.Errorf("integrity_check: %w", err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return 0, err
		}
		problems = append(problems, s)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("integrity_check: %w", err)
	}
	if !slices.Equal(problems, []string{"ok"}) {
		return 0, fmt.Errorf("integrity_check: %s", strings.Join(problems, "\n"))
	}

	var tables int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'acks'").Scan(&tables); err != nil {
		return 0, err
	}
	if tables == 0 {
		if lastAcked > 0 || m.seq > 0 {
			return 0, fmt.Errorf("the acks table is gone, but commits up to %d were acknowledged and %d were seen", lastAcked, m.seq)
		}
		return 0, nil // killed before the schema was committed
	}

	// acks is gap-free from 1 and reaches at least the last ack: every
	// acknowledged commit is present (the later ones were durable but the
	// child died before saying so).
	var n, lo, hi int64
	if err := db.QueryRow("SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM acks").Scan(&n, &lo, &hi); err != nil {
		return 0, err
	}
	if n != hi || (n > 0 && lo != 1) {
		return 0, fmt.Errorf("acks has %d rows, seq %d..%d: not gap-free from 1", n, lo, hi)
	}
	if hi < lastAcked {
		return 0, fmt.Errorf("lost acknowledged commits: newest seq is %d, but %d was acknowledged", hi, lastAcked)
	}
	if hi < m.seq {
		return 0, fmt.Errorf("lost commits: newest seq is %d, but %d was found after an earlier kill", hi, m.seq)
	}

	// The acks rows new since the last check belong to their transactions.
	from := m.seq
	rows, err = db.Query("SELECT seq, shape, digest FROM acks WHERE seq > ? ORDER BY seq", from)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var seq int64
		var shape, digest string
		if err := rows.Scan(&seq, &shape, &digest); err != nil {
			rows.Close()
			return 0, err
		}
		if want := crashTxnFor(m.seed, seq); shape != want.shape || digest != want.digest {
			rows.Close()
			return 0, fmt.Errorf("acks row %d is (%s, %s), want (%s, %s)", seq, shape, digest, want.shape, want.digest)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}

	// The data is exactly the state after transaction hi: no part of a
	// later one, nothing missing of an earlier one.
	m.advance(hi)
	if hi > 0 {
		var total, nrows, gotTotal, gotRows int64
		if err := db.QueryRow("SELECT total, nrows FROM acks WHERE seq = ?", hi).Scan(&total, &nrows); err != nil {
			return 0, err
		}
		if err := db.QueryRow("SELECT coalesce(sum(val), 0), count(*) FROM kv").Scan(&gotTotal, &gotRows); err != nil {
			return 0, err
		}
		if gotTotal != total || gotRows != nrows {
			return 0, fmt.Errorf("kv has sum %d over %d rows, but transaction %d recorded %d over %d", gotTotal, gotRows, hi, total, nrows)
		}
	}
	if err := crashCheckKV(db, m); err != nil {
		return 0, fmt.Errorf("after transaction %d: %w", hi, err)
	}
	if err := crashCheckBlobs(db, m); err != nil {
		return 0, fmt.Errorf("after transaction %d: %w", hi, err)
	}
	if n, err := volumePagesWith(dir, crashVolume, crashRollbackMarker); err != nil || n > 0 {
		return 0, fmt.Errorf("after transaction %d: %d pages of the volume hold bytes of a rolled-back transaction (%v)", hi, n, err)
	}
	return hi, nil
}

func crashCheckKV(db *sql.DB, m *crashModel) error {
	rows, err := db.Query("SELECT id, val, pad FROM kv ORDER BY id")
	if err != nil {
		return err
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id, val int64
		var pad string
		if err := rows.Scan(&id, &val, &pad); err != nil {
			return err
		}
		want, ok := m.kv[id]
		if !ok || val != want || pad != crashPad(id) {
			return fmt.Errorf("kv row %d is %d (pad ok: %v); want present %v, %d", id, val, pad == crashPad(id), ok, want)
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if seen != len(m.kv) {
		return fmt.Errorf("kv has %d rows, want %d", seen, len(m.kv))
	}
	return nil
}

func crashCheckBlobs(db *sql.DB, m *crashModel) error {
	rows, err := db.Query("SELECT slot, seq, data FROM blobs ORDER BY slot")
	if err != nil {
		return err
	}
	seen := 0
	for rows.Next() {
		var slot, seq int64
		var data []byte
		if err := rows.Scan(&slot, &seq, &data); err != nil {
			rows.Close()
			return err
		}
		want, ok := m.blobs[slot]
		if !ok || seq != want.seq || sha256.Sum256(data) != want.sum {
			rows.Close()
			return fmt.Errorf("blob %d from transaction %d (%d bytes) is not the expected one (present %v, from %d)", slot, seq, len(data), ok, want.seq)
		}
		seen++
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	if seen != len(m.blobs) {
		return fmt.Errorf("blobs has %d rows, want %d", seen, len(m.blobs))
	}

	rows, err = db.Query("SELECT id, data FROM bulk ORDER BY id")
	if err != nil {
		return err
	}
	defer rows.Close()
	h := sha256.New()
	var n int64
	for rows.Next() {
		var id int64
		var data []byte
		if err := rows.Scan(&id, &data); err != nil {
			return err
		}
		if n++; id != n {
			return fmt.Errorf("bulk row %d where %d was expected", id, n)
		}
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(data))))
		h.Write(data)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != int64(m.bulkN) || [32]byte(h.Sum(nil)) != m.bulkSum {
		return fmt.Errorf("bulk has %d rows, want %d, contents match: %v", n, m.bulkN, [32]byte(h.Sum(nil)) == m.bulkSum)
	}
	return nil
}

// crashCheckAllAcks checks every acks row once at the end (crashCheck looks
// only at the ones new since the kill before), and counts the committed
// transactions that spilled SQLite's page cache, and the pages they spilled.
func crashCheckAllAcks(dir string, seed uint64, hi int64) (spilledTxns, spilledPages int64, err error) {
	db, err := crashOpen(dir)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	rows, err := db.Query("SELECT seq, shape, digest, spilled FROM acks ORDER BY seq")
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	var want int64
	for rows.Next() {
		var seq, spilled int64
		var shape, digest string
		if err := rows.Scan(&seq, &shape, &digest, &spilled); err != nil {
			return 0, 0, err
		}
		want++
		if txn := crashTxnFor(seed, seq); seq != want || shape != txn.shape || digest != txn.digest {
			return 0, 0, fmt.Errorf("acks row %d is (%d, %s, %s), want (%d, %s, %s)", want, seq, shape, digest, want, txn.shape, txn.digest)
		}
		if spilled > 0 {
			spilledTxns++
			spilledPages += spilled
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	if want != hi {
		return 0, 0, fmt.Errorf("acks has %d rows at the end, want %d", want, hi)
	}
	return spilledTxns, spilledPages, nil
}

func crashSpan(acks []int64) string {
	if len(acks) == 0 {
		return "nothing"
	}
	return fmt.Sprintf("%d..%d", acks[0], acks[len(acks)-1])
}

// The child process, seen from the parent.

type crashChildProc struct {
	cmd     *exec.Cmd
	started time.Time
	stderr  bytes.Buffer // written by exec until Wait returns
	eof     chan struct{}
	newAck  chan struct{}

	mu struct {
		sync.Mutex
		acks  []int64
		other []string // anything else the child printed
	}
}

func startCrashChild(t *testing.T, dir string, seed uint64) *crashChildProc {
	t.Helper()
	c := &crashChildProc{eof: make(chan struct{}), newAck: make(chan struct{}, 1)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.timeout=10m")
	c.cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(seed, 10))
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.started = time.Now()
	t.Cleanup(func() { c.kill() }) // a no-op once killed
	go c.read(out)
	return c
}

func (c *crashChildProc) read(out io.Reader) {
	defer close(c.eof)
	br := bufio.NewReader(out)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if line != "" {
				c.mu.Lock()
				c.mu.other = append(c.mu.other, line+" (no newline)")
				c.mu.Unlock()
			}
			return
		}
		line = strings.TrimSuffix(line, "\n")
		c.mu.Lock()
		if s, ok := strings.CutPrefix(line, "ack "); ok {
			if seq, err := strconv.ParseInt(s, 10, 64); err == nil {
				c.mu.acks = append(c.mu.acks, seq)
				select {
				case c.newAck <- struct{}{}:
				default:
				}
				c.mu.Unlock()
				continue
			}
		}
		c.mu.other = append(c.mu.other, line)
		c.mu.Unlock()
	}
}

func (c *crashChildProc) waitAck(timeout time.Duration) error {
	select {
	case <-c.newAck:
		return nil
	case <-c.eof:
		return errors.New("child exited before its first ack")
	case <-time.After(timeout):
		return fmt.Errorf("no ack from the child in %v", timeout)
	}
}

// kill SIGKILLs the child and reaps it. It fails if the child had exited
// by itself: the child only ever stops by being killed.
func (c *crashChildProc) kill() error {
	if c.cmd.ProcessState != nil {
		return nil
	}
	// An error means the child is already gone; Wait says how it ended.
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.eof // every ack the child wrote has been read
	err := c.cmd.Wait()
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return fmt.Errorf("child exited by itself: %v", err)
	}
	return nil
}

func (c *crashChildProc) acked() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.mu.acks)
}

// report describes the child for a failure message; call it after kill.
func (c *crashChildProc) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "child ran %v, acked %s", time.Since(c.started).Round(time.Millisecond), crashSpan(c.mu.acks))
	if len(c.mu.other) > 0 {
		fmt.Fprintf(&b, "\nchild stdout:\n%s", strings.Join(c.mu.other, "\n"))
	}
	if c.cmd.ProcessState != nil && c.stderr.Len() > 0 {
		fmt.Fprintf(&b, "\nchild stderr:\n%s", c.stderr.String())
	}
	return b.String()
}

// crashSync is the child's PRAGMA synchronous: NORMAL or FULL.
func crashSync() string {
	if os.Getenv(crashSyncEnv) == "NORMAL" {
		return "NORMAL"
	}
	return "FULL"
}
