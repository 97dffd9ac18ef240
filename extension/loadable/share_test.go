package main

// Several processes on one data directory (issue 15), each a real host:
// Debian's sqlite3 shell and python3 loading libcambium.so, and a Go
// program using the Go VFS (this test binary run again, see
// TestShare_GoChild). The first process to open the directory owns it and
// serves the others over its socket; when it exits or dies, another takes
// over.

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"

	_ "github.com/cambiumdb/cambium/extension/govfs"
)

// goChildEnv makes this test binary a Go program of the share tests: its
// value is the role and the arguments, separated by \x1f (not a CAMBIUM_
// variable: hostEnv drops those, and the Go VFS reads them).
const goChildEnv = "SHARETEST_GOCHILD"

const (
	shareAccounts = 10
	shareOpening  = 1000
)

// shareBankSchema creates the bank: accounts, and a log row per transfer
// keyed by the process that made it and its sequence number there, so
// that a transfer retried after an error that left its fate unknown (the
// owner died during COMMIT) is never applied twice.
var shareBankSchema = `
CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE log(who TEXT NOT NULL, seq INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL, PRIMARY KEY (who, seq));
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ` + strconv.Itoa(shareAccounts) + `)
INSERT INTO accounts SELECT i, ` + strconv.Itoa(shareOpening) + ` FROM c;
`

// bankReport is what one process of the bank did.
type bankReport struct {
	Who        string   `json:"who"`
	Acked      []int    `json:"acked"`      // sequence numbers whose COMMIT returned
	InDoubt    []int    `json:"in_doubt"`   // COMMIT failed as the owner went away, yet it committed
	Checks     int      `json:"checks"`     // totals read between transfers
	Violations []string `json:"violations"` // totals that were wrong
	Retries    int      `json:"retries"`    // busy, or the owner went away
	Errors     []string `json:"errors"`     // anything else: fails the test
	took       time.Duration
}

// TestShare_Bank: four processes at once on one volume, two sqlite3
// shells, python3 and a Go program, move money between accounts in
// BEGIN IMMEDIATE transactions that also log the transfer, and each reads
// the total in a read transaction after every transfer. A fifth process
// owns the directory at the start, holding the write lock with a transfer
// it never logs, and is killed with SIGKILL as they begin; the four
// finish at different times. So the directory changes owner under them,
// by a kill and by clean exits, while they carry on, and the transfers an
// owner's departure broke are retried. At the end: no total was ever
// wrong, every acknowledged transfer is in the log, nothing else is, and
// every balance is its opening plus its logged transfers (a lost update,
// or the killed owner's transfer, would break that).
func TestShare_Bank(t *testing.T) {
	so := libPath(t)
	needShell(t)
	needPython(t)
	const each = 100 // transfers per process
	dir := t.TempDir()
	uri := volumeURI("bank.db", dir)
	if r := runShell(t, "", hostEnv(), ".bail on\n.load "+so+"\n.open "+uri+"\n"+shareBankSchema); r.err != nil {
		t.Fatalf("create the bank: %v\n%s", r.err, r.stderr)
	}

	// A fifth process opens the volume first, so that it owns the
	// directory, and holds the write lock until the four have started: they
	// begin together, and the directory changes owner under them when it
	// is killed.
	holder := startShell(t, hostEnv())
	holder.send(t, ".load "+so+"\n.open "+uri+`
BEGIN IMMEDIATE;
UPDATE accounts SET balance = balance - 500 WHERE id = 1;
UPDATE accounts SET balance = balance + 500 WHERE id = 2;
.print holding
`)
	holder.waitFor(t, "holding")

	reports := make([]bankReport, 4)
	var wg sync.WaitGroup
	began := time.Now()
	wg.Go(func() {
		time.Sleep(time.Second)
		holder.kill()
	})
	for i := range 2 {
		wg.Go(func() {
			reports[i] = shellBank(t, so, uri, "shell"+strconv.Itoa(i+1), each, uint64(i+1))
			reports[i].took = time.Since(began)
		})
	}
	wg.Go(func() { reports[2] = pythonBank(t, so, uri, each); reports[2].took = time.Since(began) })
	wg.Go(func() { reports[3] = goBank(t, dir, each); reports[3].took = time.Since(began) })
	wg.Wait()
	for _, rep := range reports {
		t.Logf("%s: %d acknowledged, %d retries, done after %v", rep.Who, len(rep.Acked), rep.Retries, rep.took)
	}
	if t.Failed() {
		return
	}

	// The log as a fresh process sees it.
	r := runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+uri+`
.print @integrity
PRAGMA integrity_check;
.print @total
SELECT sum(balance), count(*) FROM accounts;
.print @mismatched
SELECT count(*) FROM accounts a WHERE balance != `+strconv.Itoa(shareOpening)+`
  - (SELECT coalesce(sum(amount), 0) FROM log WHERE src = a.id)
  + (SELECT coalesce(sum(amount), 0) FROM log WHERE dst = a.id);
.print @log
SELECT who, seq FROM log ORDER BY who, seq;
`)
	if r.err != nil {
		t.Fatalf("check the bank: %v\n%s", r.err, r.stderr)
	}
	s := sections(r.stdout)
	logged := map[string][]int{}
	for _, line := range s["log"] {
		who, seq, _ := strings.Cut(line, "|")
		n, _ := strconv.Atoi(seq)
		logged[who] = append(logged[who], n)
	}
	var acked, checks, violations, lost, retries, doubtIn int
	for _, rep := range reports {
		if len(rep.Errors) > 0 {
			t.Errorf("%s: errors: %q", rep.Who, rep.Errors)
		}
		for _, v := range rep.Violations {
			t.Errorf("%s: invariant violated: %s", rep.Who, v)
		}
		acked += len(rep.Acked)
		checks += rep.Checks
		violations += len(rep.Violations)
		retries += rep.Retries
		got := logged[rep.Who]
		for _, seq := range rep.Acked {
			if !slices.Contains(got, seq) {
				lost++
				t.Errorf("%s: acknowledged transfer %d is not in the log", rep.Who, seq)
			}
		}
		for _, seq := range got {
			switch {
			case slices.Contains(rep.Acked, seq):
			case slices.Contains(rep.InDoubt, seq):
				doubtIn++
			default:
				t.Errorf("%s: transfer %d is in the log, but was never acknowledged nor in doubt", rep.Who, seq)
			}
		}
		if len(rep.Acked)+countIn(rep.InDoubt, got) != each {
			t.Errorf("%s: %d transfers acknowledged and %d in doubt made it, want %d", rep.Who, len(rep.Acked), countIn(rep.InDoubt, got), each)
		}
		if rep.Checks < each {
			t.Errorf("%s: checked the total %d times in %d transfers", rep.Who, rep.Checks, each)
		}
	}
	if got := one(t, s, "integrity"); got != "ok" {
		t.Errorf("integrity_check: %s", got)
	}
	if got, want := one(t, s, "total"), fmt.Sprintf("%d|%d", shareAccounts*shareOpening, shareAccounts); got != want {
		t.Errorf("total|accounts = %s, want %s", got, want)
	}
	if got := one(t, s, "mismatched"); got != "0" {
		t.Errorf("%s accounts disagree with the transfer log (a lost update)", got)
	}
	t.Logf("bank across 4 processes (2 sqlite3, python3, Go): %d transfers acknowledged, %d in doubt and committed, %d retried, %d totals checked: %d violations, %d lost",
		acked, doubtIn, retries, checks, violations, lost)
}

func countIn(seqs, in []int) int {
	n := 0
	for _, s := range seqs {
		if slices.Contains(in, s) {
			n++
		}
	}
	return n
}

// shellBank runs n transfers in sqlite3 shells. A shell stops at its first
// error (.bail on): one that is not an error of the owner going away fails
// the test; after one, the transfer it was in is in doubt and a new shell
// goes on with the next.
func shellBank(t *testing.T, so, uri, who string, n int, seed uint64) bankReport {
	rng := rand.New(rand.NewPCG(seed, 7))
	rep := bankReport{Who: who}
	want := strconv.Itoa(shareAccounts*shareOpening) + "|" + strconv.Itoa(shareAccounts)
	next := 1
	for starts := 0; next <= n; starts++ {
		if starts > 20 {
			rep.Errors = append(rep.Errors, "20 shells in a row stopped on errors")
			break
		}
		var b strings.Builder
		b.WriteString(".bail on\n.load " + so + "\n.open " + uri + "\n.timeout 30000\n")
		for seq := next; seq <= n; seq++ {
			src := 1 + rng.IntN(shareAccounts)
			dst := 1 + (src+rng.IntN(shareAccounts-1))%shareAccounts
			amount := 1 + rng.IntN(100)
			fmt.Fprintf(&b, `.print try %d
BEGIN IMMEDIATE;
INSERT INTO log VALUES ('%s', %d, %d, %d, %d);
UPDATE accounts SET balance = balance - %d WHERE id = %d;
UPDATE accounts SET balance = balance + %d WHERE id = %d;
COMMIT;
.print ack %d
BEGIN;
SELECT 'total', sum(balance) || '|' || count(*) FROM accounts;
COMMIT;
`, seq, who, seq, src, dst, amount, amount, src, amount, dst, seq)
		}
		r := runShell(t, "", hostEnv(), b.String())
		tried := 0
		for _, line := range strings.Split(r.stdout, "\n") {
			switch {
			case strings.HasPrefix(line, "try "):
				tried, _ = strconv.Atoi(line[4:])
			case strings.HasPrefix(line, "ack "):
				seq, _ := strconv.Atoi(line[4:])
				rep.Acked = append(rep.Acked, seq)
				next = seq + 1
			case strings.HasPrefix(line, "total|"):
				rep.Checks++
				if got := line[len("total|"):]; got != want {
					rep.Violations = append(rep.Violations, "total|accounts "+got+", want "+want)
				}
			}
		}
		if r.err == nil {
			break
		}
		if !ownerGone(r.stderr) {
			rep.Errors = append(rep.Errors, fmt.Sprintf("sqlite3: %v: %s", r.err, strings.TrimSpace(r.stderr)))
			break
		}
		rep.Retries++
		t.Logf("%s: transfer %d: %s", who, tried, strings.TrimSpace(r.stderr))
		if tried >= next {
			// Failed inside the transfer: it may have committed. Another
			// process looks, and the transfer is made again if not.
			c := runShell(t, "", hostEnv(), fmt.Sprintf(".bail on\n.load %s\n.open %s\n.timeout 30000\nSELECT count(*) FROM log WHERE who = '%s' AND seq = %d;\n", so, uri, who, tried))
			switch strings.TrimSpace(c.stdout) {
			case "1":
				rep.InDoubt = append(rep.InDoubt, tried)
				next = tried + 1
			case "0":
				next = tried
			default:
				rep.Errors = append(rep.Errors, fmt.Sprintf("look for transfer %d: %v: %s%s", tried, c.err, c.stdout, c.stderr))
				return rep
			}
		}
	}
	return rep
}

// ownerGone reports whether a host's error output is the error a
// transaction gets when the owner of the directory went away under it
// (an I/O error in SQLite, the engine's message in the log line).
func ownerGone(stderr string) bool {
	return strings.Contains(stderr, "disk I/O error") || strings.Contains(stderr, "owner")
}

// pythonBank runs n transfers in python3, retrying busy ones and those the
// owner's departure broke (with the same sequence number: a duplicate key
// says the one before committed after all).
func pythonBank(t *testing.T, so, uri string, n int) bankReport {
	var rep bankReport
	runPython(t, hostEnv(), pyPrelude+`
uri, N, ACCOUNTS, START = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
boot = load()
db = connect(uri, timeout=30)
rnd = random.Random(3)
rep = {"who": "python", "acked": [], "in_doubt": [], "checks": 0, "violations": [], "retries": 0, "errors": []}
want = (ACCOUNTS * START, ACCOUNTS)

def retryable(e):
    m = str(e)
    return "locked" in m or "busy" in m or "I/O error" in m

def rollback():
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error:
        pass

seq, doubt = 1, False
while seq <= N and not rep["errors"]:
    src = rnd.randint(1, ACCOUNTS)
    dst = 1 + (src + rnd.randint(0, ACCOUNTS - 2)) % ACCOUNTS
    amount = rnd.randint(1, 100)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO log VALUES ('python', ?, ?, ?, ?)", (seq, src, dst, amount))
        except sqlite3.IntegrityError:
            # The try before this one committed although its COMMIT failed.
            rollback()
            rep["in_doubt"].append(seq)
            seq, doubt = seq + 1, False
            continue
        db.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, src))
        db.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst))
        db.execute("COMMIT")
        rep["acked"].append(seq)
        seq, doubt = seq + 1, False
    except sqlite3.Error as e:
        rollback()
        if not retryable(e):
            rep["errors"].append("transfer %d: %s" % (seq, e))
            break
        rep["retries"] += 1
        time.sleep(rnd.random() * 0.002)
        continue
    while True:
        try:
            db.execute("BEGIN")
            got = db.execute("SELECT sum(balance), count(*) FROM accounts").fetchone()
            db.execute("COMMIT")
            break
        except sqlite3.Error as e:
            rollback()
            if not retryable(e):
                rep["errors"].append("check: %s" % e)
                break
            rep["retries"] += 1
    rep["checks"] += 1
    if tuple(got) != want:
        rep["violations"].append("total, accounts %r, want %r" % (tuple(got), want))
db.close()
print(json.dumps(rep))
`, &rep, uri, strconv.Itoa(n), strconv.Itoa(shareAccounts), strconv.Itoa(shareOpening))
	return rep
}

// goBank runs n transfers in a Go program using the Go VFS.
func goBank(t *testing.T, dir string, n int) bankReport {
	ctx, cancel := context.WithTimeout(context.Background(), hostTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestShare_GoChild$", "-test.count=1")
	cmd.Env = hostEnv(goChildEnv + "=" + strings.Join([]string{"bank", dir, strconv.Itoa(n)}, "\x1f"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var rep bankReport
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("Go program: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String()))
		return rep
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("Go program: %v: %s", err, out))
	}
	return rep
}

// TestShare_GoChild is the Go program of the share tests; it does nothing
// unless goChildEnv is set.
func TestShare_GoChild(t *testing.T) {
	env := os.Getenv(goChildEnv)
	if env == "" {
		return
	}
	f := strings.Split(env, "\x1f")
	role, dir := f[0], f[1]
	switch role {
	case "bank":
		n, _ := strconv.Atoi(f[2])
		rep := goChildBank(dir, n)
		b, _ := json.Marshal(rep)
		fmt.Println(string(b))
	}
	os.Exit(0)
}

func goChildBank(dir string, n int) bankReport {
	rep := bankReport{Who: "go"}
	db, err := sql.Open("sqlite3", volumeURI("bank.db", dir, "_pragma=busy_timeout(30000)"))
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep
	}
	defer conn.Close()
	retryable := func(err error) bool {
		m := err.Error()
		return strings.Contains(m, "locked") || strings.Contains(m, "busy") || strings.Contains(m, "I/O error")
	}
	rng := rand.New(rand.NewPCG(4, 7))
	want := fmt.Sprintf("%d|%d", shareAccounts*shareOpening, shareAccounts)
	for seq := 1; seq <= n; {
		src := 1 + rng.IntN(shareAccounts)
		dst := 1 + (src+rng.IntN(shareAccounts-1))%shareAccounts
		amount := 1 + rng.IntN(100)
		err := func() error {
			if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				return err
			}
			if _, err := conn.ExecContext(ctx, "INSERT INTO log VALUES ('go', ?, ?, ?, ?)", seq, src, dst, amount); err != nil {
				return err
			}
			if _, err := conn.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, src); err != nil {
				return err
			}
			if _, err := conn.ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE id = ?", amount, dst); err != nil {
				return err
			}
			_, err := conn.ExecContext(ctx, "COMMIT")
			return err
		}()
		switch {
		case err == nil:
			rep.Acked = append(rep.Acked, seq)
			seq++
		case strings.Contains(err.Error(), "UNIQUE constraint failed"):
			// The try before this one committed although its COMMIT failed.
			conn.ExecContext(ctx, "ROLLBACK")
			rep.InDoubt = append(rep.InDoubt, seq)
			seq++
			continue
		case retryable(err):
			conn.ExecContext(ctx, "ROLLBACK")
			rep.Retries++
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
			continue
		default:
			rep.Errors = append(rep.Errors, fmt.Sprintf("transfer %d: %v", seq, err))
			return rep
		}
		for {
			var got string
			err := func() error {
				if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
					return err
				}
				defer conn.ExecContext(ctx, "ROLLBACK")
				return conn.QueryRowContext(ctx, "SELECT sum(balance) || '|' || count(*) FROM accounts").Scan(&got)
			}()
			if err == nil {
				rep.Checks++
				if got != want {
					rep.Violations = append(rep.Violations, "total|accounts "+got+", want "+want)
				}
				break
			}
			if !retryable(err) {
				rep.Errors = append(rep.Errors, fmt.Sprintf("check: %v", err))
				return rep
			}
			rep.Retries++
		}
	}
	return rep
}

// pyOwner is a python3 process that opens a volume first, so that it owns
// the data directory: it creates table t (id, gen, pad) with rows rows of
// generation 1 and prints "ready"; then each line "insert N" on its input
// inserts row N and each "gen G" sets every row's generation to G, in one
// transaction each, printing "acked insert N" or "acked gen G" once
// COMMIT returned; "loop" inserts rows after the last one until killed,
// printing "acked insert N" for each.
const pyOwner = pyPrelude + `
uri, rows = sys.argv[2], int(sys.argv[3])
boot = load()
db = connect(uri, timeout=30)
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, gen INTEGER NOT NULL, pad BLOB)")
db.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?) INSERT INTO t SELECT i, 1, randomblob(300) FROM c", (rows,))
print("ready", flush=True)
for line in sys.stdin:
    op, n = line.split()
    n = int(n)
    if op == "insert":
        db.execute("INSERT INTO t VALUES (?, 1, randomblob(300))", (n,))
    elif op == "gen":
        db.execute("UPDATE t SET gen = ?", (n,))
    elif op == "loop":
        while True:
            n += 1
            db.execute("INSERT INTO t VALUES (?, 1, randomblob(300))", (n,))
            print("acked insert %d" % n, flush=True)
    print("acked %s %d" % (op, n), flush=True)
`

// startPyOwner starts pyOwner on the volume at uri, and waits until it
// has opened it.
func startPyOwner(t *testing.T, uri string, rows int) *shellProc {
	t.Helper()
	needPython(t)
	so := libPath(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "owner.py")
	if err := os.WriteFile(path, []byte(pyOwner), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, hostEnv(), python, path, so, uri, strconv.Itoa(rows))
	p.waitFor(t, "ready")
	return p
}

// startProc starts a host process whose input is a pipe and whose output
// is read line by line, killed at the end of the test if still running.
func startProc(t *testing.T, env []string, name string, args ...string) *shellProc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = env
	p := &shellProc{cmd: cmd, lines: make(chan string, 64), stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// TestShare_StaleSocket: the owner of a data directory, a python3 process
// inserting rows, dies by SIGKILL and leaves its socket behind; a sqlite3
// shell opening the volume afterwards takes the directory over and sees
// every row whose COMMIT had returned, and a shell after it too.
func TestShare_StaleSocket(t *testing.T) {
	so := libPath(t)
	needShell(t)
	dir := t.TempDir()
	uri := volumeURI("stale.db", dir)
	owner := startPyOwner(t, uri, 10)
	owner.send(t, "loop 10\n")
	owner.waitFor(t, "acked insert 60")
	owner.kill()
	last := 60
	for _, line := range owner.rest {
		if n, ok := strings.CutPrefix(line, "acked insert "); ok {
			last, _ = strconv.Atoi(n)
		}
	}
	sock := filepath.Join(dir, "cambium.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the killed owner left no socket behind (%v): the test tests nothing", err)
	}
	for round := range 2 {
		r := runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+uri+`
.print @rows
SELECT count(*), count(*) = max(id) FROM t WHERE id BETWEEN 1 AND `+strconv.Itoa(last)+`;
.print @integrity
PRAGMA integrity_check;
INSERT INTO t VALUES (-1 - `+strconv.Itoa(round)+`, 1, NULL);
`)
		if r.err != nil {
			t.Fatalf("round %d: sqlite3 after the owner was killed: %v\n%s", round, r.err, r.stderr)
		}
		s := sections(r.stdout)
		if got, want := one(t, s, "rows"), strconv.Itoa(last)+"|1"; got != want {
			t.Errorf("round %d: rows up to the last acknowledged (%d): count|complete = %s, want %s", round, last, got, want)
		}
		if got := one(t, s, "integrity"); got != "ok" {
			t.Errorf("round %d: integrity_check: %s", round, got)
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket is still there after the last process closed the directory: %v", err)
	}
	t.Logf("the owner acknowledged %d rows before SIGKILL; a new process saw them all", last)
}

// TestShare_OpenAcrossTakeover: a sqlite3 shell that joined a python3
// owner holds a transaction open when the owner is killed; the rest of
// that transaction fails with an error (SQLite's I/O error), and the
// shell's next transaction works, on the directory it now owns. Once a
// write transaction (its rows never appear), once a read transaction
// (it never sees the commit the owner made after it began).
func TestShare_OpenAcrossTakeover(t *testing.T) {
	so := libPath(t)
	needShell(t)
	for _, write := range []bool{true, false} {
		name := "read"
		if write {
			name = "write"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			uri := volumeURI("takeover.db", dir)
			// Enough rows that their pages are not all in the shell's
			// cache when the owner dies.
			const rows = 3000
			owner := startPyOwner(t, uri, rows)
			sh := startShell(t, hostEnv())
			sh.send(t, ".load "+so+"\n.open "+uri+"\n.timeout 30000\n.print ready\n")
			sh.waitFor(t, "ready")
			if write {
				sh.send(t, "BEGIN IMMEDIATE;\nINSERT INTO t VALUES (-1, 0, NULL);\n.print inside\n")
				sh.waitFor(t, "inside")
			} else {
				sh.send(t, "BEGIN;\nSELECT 'first', count(*) FROM t WHERE id <= 10;\n.print inside\n")
				sh.waitFor(t, "inside")
				// A commit after the shell's snapshot: its transaction
				// must not see it.
				owner.send(t, "gen 2\n")
				owner.waitFor(t, "acked gen 2")
			}
			owner.kill()
			if write {
				sh.send(t, "INSERT INTO t VALUES (-2, 0, NULL);\nCOMMIT;\n.print after\n")
			} else {
				sh.send(t, "SELECT 'in', min(gen), max(gen), count(*) FROM t;\nCOMMIT;\n.print after\n")
			}
			inTxn := sh.collect(t, "after")
			errs := sh.stderrWith(t, "disk I/O error")
			if !strings.Contains(errs, "disk I/O error") || !strings.Contains(errs, "went away") {
				t.Errorf("the transaction open across the takeover did not fail with an I/O error naming the owner's death; stderr:\n%s", errs)
			}
			for _, line := range inTxn {
				if strings.HasPrefix(line, "in|2|") || strings.HasPrefix(line, "in|1|2") {
					t.Errorf("the read transaction saw the commit made after it began: %s", line)
				}
			}
			// The next transaction works and sees every acknowledged commit.
			sh.send(t, `BEGIN IMMEDIATE;
INSERT INTO t VALUES (-3, 0, NULL);
COMMIT;
SELECT 'next', group_concat(id), (SELECT count(*) FROM t WHERE id > 0), (SELECT min(gen) || '-' || max(gen) FROM t WHERE id > 0) FROM t WHERE id < 0;
.print end
`)
			next := sh.collect(t, "end")
			wantGen := "1-1"
			if !write {
				wantGen = "2-2"
			}
			want := "next|-3|" + strconv.Itoa(rows) + "|" + wantGen
			if !slices.Contains(next, want) {
				t.Errorf("the next transaction printed %q, want %q; stderr:\n%s", next, want, sh.stderr.String())
			}
			t.Logf("the transaction open across the takeover: %s", lineWith(errs, "disk I/O error"))
		})
	}
}

// stderrWith returns the process's error output once it holds want (the
// shell writes it before its next output, but it reaches this process
// through another pipe), or after a few seconds.
func (p *shellProc) stderrWith(t *testing.T, want string) string {
	for range 500 {
		if s := p.stderr.String(); strings.Contains(s, want) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p.stderr.String()
}

// lineWith returns the first line of s holding want, or s's last line.
func lineWith(s, want string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, want) {
			return line
		}
	}
	return lastLine(s)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// collect reads output lines until one equal to want, and returns those
// before it.
func (p *shellProc) collect(t *testing.T, want string) []string {
	t.Helper()
	var got []string
	timeout := time.After(hostTimeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("%s exited before printing %q\nstderr:\n%s", p.cmd.Path, want, p.stderr.String())
			}
			if line == want {
				return got
			}
			got = append(got, line)
		case <-timeout:
			t.Fatalf("%s did not print %q within %v\nstderr:\n%s", p.cmd.Path, want, hostTimeout, p.stderr.String())
		}
	}
}

// TestShare_OtherUser: a process of another user is refused with an error
// naming its user, both when file permissions would let it reach the
// owner's socket (the owner checks the peer's user) and when they do not
// (the socket's mode is 0600), and the owner and its volume carry on. It
// runs the sqlite3 shell as nobody (uid 65534), so it needs root.
func TestShare_OtherUser(t *testing.T) {
	so := libPath(t)
	needShell(t)
	if os.Getuid() != 0 {
		t.Skip("needs root, to run a process as another user (nobody)")
	}
	dir := t.TempDir()
	uri := volumeURI("mine.db", dir)
	owner := startPyOwner(t, uri, 10)
	// Let nobody reach the library and the directory.
	for _, d := range []string{lib.dir, dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "cambium.sock")
	for i, c := range []struct {
		sockMode os.FileMode
		want     string
	}{
		// Only the owner's check of the peer's user stands in its way.
		{0o666, "process of user 65534 refused: the data directory " + dir + " is served to its own user (0) only"},
		// The socket as the owner made it.
		{0o600, "the data directory belongs to user 0 and this process runs as user 65534"},
	} {
		if err := os.Chmod(sock, c.sockMode); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), hostTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, sqliteShell, "-batch")
		cmd.Dir = dir
		cmd.Env = hostEnv("HOME=/nonexistent")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Stdin = strings.NewReader(".bail on\n.load " + so + "\n.open " + uri + "\nSELECT count(*) FROM t;\n")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil {
			t.Fatalf("a process of user nobody opened another user's volume; it printed %q", stdout.String())
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("socket mode %o: the refusal lacks %q; stderr:\n%s", c.sockMode, c.want, stderr.String())
		}
		// The owner carries on.
		owner.send(t, "insert "+strconv.Itoa(11+i)+"\n")
		owner.waitFor(t, "acked insert "+strconv.Itoa(11+i))
		t.Logf("nobody's sqlite3, socket mode %o: %s", c.sockMode, lineWith(stderr.String(), "ERROR"))
	}
}
