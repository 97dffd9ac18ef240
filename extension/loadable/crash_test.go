package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shellProc is a sqlite3 shell fed statements over a pipe, whose output
// is read line by line.
type shellProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	rest   []string // what kill read after the last waitFor
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startShell(t *testing.T, env []string) *shellProc {
	t.Helper()
	needShell(t)
	return startProc(t, env, sqliteShell, "-batch")
}

func (p *shellProc) send(t *testing.T, sql string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, sql); err != nil {
		t.Fatalf("write to sqlite3: %v\nstderr:\n%s", err, p.stderr.String())
	}
}

// waitFor reads output until a line equal to want. The shell flushes its
// output after each statement and before it reads more input.
func (p *shellProc) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(hostTimeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("sqlite3 exited before printing %q\nstderr:\n%s", want, p.stderr.String())
			}
			if line == want {
				return
			}
		case <-timeout:
			t.Fatalf("sqlite3 did not print %q within %v\nstderr:\n%s", want, hostTimeout, p.stderr.String())
		}
	}
}

// printed reports whether a line equal to want came after the last one
// waitFor read and before kill.
func (p *shellProc) printed(want string) bool {
	return slices.Contains(p.rest, want)
}

// kill sends SIGKILL, keeps the output the process wrote before it died,
// and reaps it.
func (p *shellProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	for line := range p.lines { // until EOF: the process is gone
		p.rest = append(p.rest, line)
	}
	_ = p.cmd.Wait()
}

// insertTx is one transaction inserting rows (tx, 1..n) with pad-byte
// blobs; without commit it leaves the transaction open.
func insertTx(tx, n, pad int, commit bool) string {
	s := fmt.Sprintf(`BEGIN;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < %d)
INSERT INTO c SELECT %d, i, randomblob(%d) FROM s;
`, n, tx, pad)
	if commit {
		s += "COMMIT;\n"
	}
	return s
}

// TestShell_SIGKILL: a sqlite3 shell writes transactions, printing a
// marker after each COMMIT returns, and is killed with SIGKILL: once with a
// large transaction open (larger than SQLite's page cache and the engine's
// staging buffer, so its pages have reached the VFS and the engine's store),
// once while a transaction may be committing. After each kill a new shell
// finds the volume intact, every acknowledged transaction whole, the open
// one absent, and the one in flight whole or absent. Rounds alternate
// synchronous=FULL and NORMAL: both survive the death of the process.
func TestShell_SIGKILL(t *testing.T) {
	so := libPath(t)
	dir := t.TempDir()
	uri := volumeURI("crash.db", dir)

	var (
		tx        int
		rowsOf    = map[int]int{} // rows each transaction inserted
		committed = map[int]bool{}
		absent    = map[int]bool{} // must not be in the volume
		inFlight  = -1             // COMMIT sent, not acknowledged
	)
	rounds := []struct {
		sync       string
		killInside bool // else during a commit
	}{{"FULL", true}, {"NORMAL", false}, {"NORMAL", true}, {"FULL", false}}
	for round, rd := range rounds {
		p := startShell(t, hostEnv())
		p.send(t, `.load `+so+`
.open `+uri+`
PRAGMA synchronous=`+rd.sync+`;
CREATE TABLE IF NOT EXISTS c(tx INTEGER NOT NULL, i INTEGER NOT NULL, pad BLOB, PRIMARY KEY (tx, i));
.print ready
`)
		p.waitFor(t, "ready")
		for k := range 12 {
			tx++
			rowsOf[tx] = 40
			if k%4 == 3 {
				rowsOf[tx] = 3000
			}
			p.send(t, insertTx(tx, rowsOf[tx], 100, true)+".print acked "+strconv.Itoa(tx)+"\n")
			p.waitFor(t, "acked "+strconv.Itoa(tx))
			committed[tx] = true
		}
		tx++
		if rd.killInside {
			// ~45 MB of pages: past SQLite's 2,000-page cache (so it writes
			// pages to the file before COMMIT) and the engine's 32 MiB of
			// staged pages (so it spills them to its store).
			rowsOf[tx] = 100000
			p.send(t, insertTx(tx, rowsOf[tx], 400, false)+".print inside\n")
			p.waitFor(t, "inside")
			absent[tx] = true
		} else {
			// Stage ~10 MB of pages, then COMMIT and kill at a random
			// instant of the next few tens of milliseconds, which the commit
			// takes.
			rowsOf[tx] = 20000
			p.send(t, insertTx(tx, rowsOf[tx], 400, false)+".print inside\n")
			p.waitFor(t, "inside")
			p.send(t, "COMMIT;\n.print acked "+strconv.Itoa(tx)+"\n")
			time.Sleep(time.Duration(rand.IntN(40_000)) * time.Microsecond)
			inFlight = tx
		}
		p.kill()
		if inFlight > 0 && p.printed("acked "+strconv.Itoa(inFlight)) {
			// COMMIT returned before the kill: acknowledged after all.
			committed[inFlight] = true
			t.Logf("round %d: the transaction killed while committing was acknowledged", round)
			inFlight = -1
		}

		found := verifyCrashVolume(t, so, uri, fmt.Sprintf("round %d (synchronous=%s)", round, rd.sync))
		for x, n := range found {
			switch {
			case committed[x] && n != rowsOf[x]:
				t.Errorf("round %d: acknowledged transaction %d has %d of its %d rows", round, x, n, rowsOf[x])
			case absent[x]:
				t.Errorf("round %d: transaction %d was never committed, yet %d of its rows are there", round, x, n)
			case x == inFlight && n != rowsOf[x]:
				t.Errorf("round %d: transaction %d, killed while committing, has %d of its %d rows: not atomic", round, x, n, rowsOf[x])
			case !committed[x] && x != inFlight:
				t.Errorf("round %d: rows of unknown transaction %d", round, x)
			}
		}
		for x := range committed {
			if _, ok := found[x]; !ok {
				t.Errorf("round %d: acknowledged transaction %d is missing", round, x)
			}
		}
		if inFlight > 0 {
			// Whichever way it went, it is now settled for later rounds.
			if _, ok := found[inFlight]; ok {
				committed[inFlight] = true
				t.Logf("round %d: the transaction killed while committing was committed", round)
			} else {
				absent[inFlight] = true
				t.Logf("round %d: the transaction killed while committing was not committed", round)
			}
			inFlight = -1
		}
		if t.Failed() {
			return
		}
	}
}

// verifyCrashVolume opens the volume in a new shell, checks its integrity
// and returns the rows found per transaction.
func verifyCrashVolume(t *testing.T, so, uri, what string) map[int]int {
	t.Helper()
	r := runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+uri+`
.print @integrity
PRAGMA integrity_check;
.print @tx
SELECT tx, count(*), count(DISTINCT i) = max(i) AND min(i) = 1 FROM c GROUP BY tx ORDER BY tx;
`)
	if r.err != nil {
		t.Fatalf("%s: reopen after SIGKILL: %v\nstdout:\n%s\nstderr:\n%s", what, r.err, r.stdout, r.stderr)
	}
	s := sections(r.stdout)
	if got := one(t, s, "integrity"); got != "ok" {
		t.Fatalf("%s: integrity_check after SIGKILL: %s", what, strings.Join(s["integrity"], "\n"))
	}
	found := map[int]int{}
	for _, line := range s["tx"] {
		f := strings.Split(line, "|")
		if len(f) != 3 || f[2] != "1" {
			t.Fatalf("%s: unexpected row %q (want tx|rows|1: rows numbered 1..n)", what, line)
		}
		x, err1 := strconv.Atoi(f[0])
		n, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: unexpected row %q", what, line)
		}
		found[x] = n
	}
	return found
}
