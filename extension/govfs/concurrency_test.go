package govfs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

const (
	bankAccounts = 100
	bankStart    = 1000
	bankTotal    = bankAccounts * bankStart
)

func setupBank(t *testing.T, db *sql.DB) {
	t.Helper()
	mustExec(t, db, "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
	mustExec(t, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO accounts SELECT i, ? FROM n`, bankAccounts, bankStart)
}

// TestConcurrency_Bank: one writer moves money between accounts in
// thousands of transactions while readers check, in read transactions,
// that the total never changes. Readers and the writer must both make
// progress: readers never block the writer, nor the writer readers.
func TestConcurrency_Bank(t *testing.T) {
	transfers := 3000
	if testing.Short() {
		transfers = 500
	}
	const readers = 4
	dir := t.TempDir()
	db := openDB(t, dir, "bank.db", "")
	setupBank(t, db)
	ctx := context.Background()

	var (
		done       atomic.Bool
		violations atomic.Int64
		wg         sync.WaitGroup
		reads      [readers]int64
		versions   [readers]map[int64]bool
		readerErr  = make(chan error, readers)
	)
	for r := range readers {
		versions[r] = map[int64]bool{}
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() || reads[r] == 0 {
				tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					readerErr <- err
					return
				}
				var sum1, sum2, n, ver int64
				err = tx.QueryRow("SELECT sum(balance), count(*) FROM accounts").Scan(&sum1, &n)
				if err == nil {
					err = tx.QueryRow("PRAGMA cambium_version").Scan(&ver)
				}
				if err == nil {
					// The same read transaction sees the same snapshot.
					err = tx.QueryRow("SELECT sum(balance) FROM accounts WHERE id > 0").Scan(&sum2)
				}
				tx.Rollback()
				if err != nil {
					readerErr <- err
					return
				}
				if sum1 != bankTotal || sum2 != bankTotal || n != bankAccounts {
					violations.Add(1)
				}
				reads[r]++
				versions[r][ver] = true
			}
		}()
	}

	writer, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range transfers {
		from, to := 1+rng.IntN(bankAccounts), 1+rng.IntN(bankAccounts)
		amount := rng.IntN(50)
		tx, err := writer.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		if _, err := tx.Exec("UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, from); err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		if _, err := tx.Exec("UPDATE accounts SET balance = balance + ? WHERE id = ?", amount, to); err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("transfer %d: commit: %v", i, err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(readerErr)
	for err := range readerErr {
		t.Fatalf("reader: %v", err)
	}
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d read transactions saw a total other than %d", v, bankTotal)
	}
	var total int64
	for r := range readers {
		total += reads[r]
		// Progress while the writer commits: each reader saw several
		// versions, so it was never held back until the writer finished.
		if len(versions[r]) < 2 {
			t.Errorf("reader %d saw %d versions in %d reads", r, len(versions[r]), reads[r])
		}
	}
	if got := queryInt(t, db, "SELECT sum(balance) FROM accounts"); got != bankTotal {
		t.Fatalf("final total %d", got)
	}
	integrityOK(t, db)
	t.Logf("%d transfers, %d read transactions by %d readers, 0 violations", transfers, total, readers)
}

// TestConcurrency_BusySnapshot: a read transaction whose snapshot is no
// longer the newest cannot become a write transaction (it would write on
// top of data it never saw): SQLITE_BUSY_SNAPSHOT, never a lost update.
func TestConcurrency_BusySnapshot(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "snap.db", "")
	setupBank(t, db)
	ctx := context.Background()
	a, _ := db.Conn(ctx)
	defer a.Close()
	b, _ := db.Conn(ctx)
	defer b.Close()

	tx, err := a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bal int64
	if err := tx.QueryRow("SELECT balance FROM accounts WHERE id = 1").Scan(&bal); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ExecContext(ctx, "UPDATE accounts SET balance = balance + 5 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec("UPDATE accounts SET balance = ? WHERE id = 1", bal-1)
	if !errors.Is(err, sqlite3.BUSY_SNAPSHOT) {
		t.Fatalf("stale upgrade: got %v, want SQLITE_BUSY_SNAPSHOT", err)
	}
	tx.Rollback()
	// A new transaction sees b's update and may write.
	if _, err := a.ExecContext(ctx, "UPDATE accounts SET balance = balance - 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, db, "SELECT balance FROM accounts WHERE id = 1"); got != bankStart+5-1 {
		t.Fatalf("balance %d, want %d", got, bankStart+4)
	}
}

// TestConcurrency_SecondWriter: one write transaction per volume; a second
// gets SQLITE_BUSY while readers carry on.
func TestConcurrency_SecondWriter(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "busy.db", "")
	setupBank(t, db)
	ctx := context.Background()
	a, _ := db.Conn(ctx)
	defer a.Close()
	b, _ := db.Conn(ctx)
	defer b.Close()
	c, _ := db.Conn(ctx)
	defer c.Close()
	if _, err := b.ExecContext(ctx, "PRAGMA busy_timeout=0"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ExecContext(ctx, "UPDATE accounts SET balance = 0 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	_, err := b.ExecContext(ctx, "BEGIN IMMEDIATE")
	if !errors.Is(err, sqlite3.BUSY) {
		t.Fatalf("second writer: got %v, want SQLITE_BUSY", err)
	}
	// A reader is not blocked, and does not see the uncommitted change.
	var bal int64
	if err := c.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE id = 2").Scan(&bal); err != nil || bal != bankStart {
		t.Fatalf("reader during a write: %d %v", bal, err)
	}
	if _, err := a.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("after the first writer committed: %v", err)
	}
	b.ExecContext(ctx, "ROLLBACK")
	if err := c.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE id = 2").Scan(&bal); err != nil || bal != 0 {
		t.Fatalf("reader after commit: %d %v", bal, err)
	}
}

// TestConcurrency_Rollback: ROLLBACK leaves no version behind and no trace
// in the data, through SQLite's in-memory journal.
func TestConcurrency_Rollback(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, "rb.db", "")
	db.SetMaxOpenConns(1)
	setupBank(t, db)
	before := queryInt(t, db, "PRAGMA cambium_version")
	mustExec(t, db, "PRAGMA cache_size=10") // force SQLite to spill pages mid-transaction
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("UPDATE accounts SET balance = balance * 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
		INSERT INTO accounts SELECT 1000 + i, 1 FROM n`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, db, "SELECT sum(balance) FROM accounts"); got != bankTotal {
		t.Fatalf("after rollback: total %d", got)
	}
	integrityOK(t, db)
	if after := queryInt(t, db, "PRAGMA cambium_version"); after != before {
		t.Fatalf("rollback moved the version from %d to %d", before, after)
	}
	t.Log(fmt.Sprint("version stayed at ", before))
}
