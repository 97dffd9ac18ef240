package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/cambiumdb/cambium/extension/govfs"
)

// writerEnv makes this test binary the writer of TestShare_CLIBesideWriter
// (not a CAMBIUM_ variable: the Go VFS reads those): its value is the data
// directory.
const writerEnv = "SHARETEST_WRITER_DIR"

// TestShare_Writer is the writer of TestShare_CLIBesideWriter, a Go program
// on the Go VFS that owns the data directory: it inserts rows 1, 2, ...
// into live.db, one transaction each; a line "mark" on its input makes it
// print "mark N", N the last row whose COMMIT returned; at the end of its
// input it closes the volume and prints "closed".
func TestShare_Writer(t *testing.T) {
	dir := os.Getenv(writerEnv)
	if dir == "" {
		return
	}
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	db, err := sql.Open("sqlite3", "file:live.db?vfs=cambium&dir="+url.QueryEscape(dir)+"&_pragma=busy_timeout(30000)")
	if err != nil {
		fail(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)"); err != nil {
		fail(err)
	}
	input := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			input <- sc.Text()
		}
		close(input)
	}()
	fmt.Println("ready")
	last := 0
	for {
		select {
		case line, ok := <-input:
			if !ok {
				if err := db.Close(); err != nil {
					fail(err)
				}
				fmt.Println("closed")
				os.Exit(0)
			}
			if line == "mark" {
				fmt.Printf("mark %d\n", last)
			}
		default:
			if _, err := db.Exec("INSERT INTO t VALUES (?, randomblob(500))", last+1); err != nil {
				fail(err)
			}
			last++
			time.Sleep(time.Millisecond)
		}
	}
}

// TestShare_CLIBesideWriter: cambium info, verify, push (to a file://
// remote) and export run beside a Go program that owns the data directory
// and writes all along; each succeeds, the export opens in plain SQLite
// with every row acknowledged before it began and none not yet
// acknowledged when it returned, and the pushed volume exports from the
// remote alike.
func TestShare_CLIBesideWriter(t *testing.T) {
	tmp := t.TempDir()
	dir, rem := filepath.Join(tmp, "data"), fileURL(filepath.Join(tmp, "remote"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestShare_Writer$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	out := bufio.NewScanner(stdout)
	expect := func(prefix string) string {
		t.Helper()
		for out.Scan() {
			if rest, ok := strings.CutPrefix(out.Text(), prefix); ok {
				return rest
			}
			if strings.HasPrefix(out.Text(), "error:") {
				break
			}
		}
		t.Fatalf("the writer did not print %q: %s\nstderr:\n%s", prefix, out.Text(), stderr.String())
		return ""
	}
	mark := func() int {
		t.Helper()
		if _, err := io.WriteString(stdin, "mark\n"); err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(expect("mark "))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	expect("ready")
	for mark() < 20 {
		time.Sleep(5 * time.Millisecond)
	}

	var info struct {
		Volume    string `json:"volume"`
		Version   uint64 `json:"version"`
		PageCount uint32 `json:"page_count"`
	}
	okJSON(t, &info, "--dir", dir, "info", "live.db")
	if info.Volume != "live.db" || info.Version == 0 || info.PageCount < 2 {
		t.Errorf("info beside the writer: %+v", info)
	}
	var verify struct {
		OK bool `json:"ok"`
	}
	okJSON(t, &verify, "--dir", dir, "verify", "live.db")
	if !verify.OK {
		t.Errorf("verify beside the writer: not ok")
	}
	pushedFrom := mark()
	ok(t, "--dir", dir, "--remote", rem, "push", "live.db")
	pushedTo := mark()

	exported := filepath.Join(tmp, "live.db")
	before := mark()
	ok(t, "--dir", dir, "export", "live.db", exported)
	after := mark()
	checkExport(t, exported, before, after)

	// What the push sent, exported from the remote by another directory.
	fromRemote := filepath.Join(tmp, "remote.db")
	ok(t, "--dir", filepath.Join(tmp, "other"), "--remote", rem, "export", "live.db", fromRemote)
	checkExport(t, fromRemote, pushedFrom, pushedTo)

	stdin.Close()
	expect("closed")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer: %v\nstderr:\n%s", err, stderr.String())
	}
	if got := ok(t, "--dir", dir, "info", "live.db"); !strings.Contains(got, "live.db") {
		t.Errorf("info after the writer closed:\n%s", got)
	}
	t.Logf("beside a writer: export holds rows 1..n with %d <= n <= %d; the push %d..%d", before, after, pushedFrom, pushedTo)
}

// checkExport opens a plain SQLite file and checks that it holds rows
// 1..n of table t, lo <= n <= hi, and passes integrity_check.
func checkExport(t *testing.T, path string, lo, hi int) {
	t.Helper()
	var n, max int
	var integrity string
	if _, err := os.Stat("/usr/bin/sqlite3"); err == nil {
		// Debian's sqlite3, the plainest SQLite there is.
		b, err := exec.Command("/usr/bin/sqlite3", "-batch", "-readonly", path,
			"SELECT count(*), coalesce(max(id), 0) FROM t; PRAGMA integrity_check;").CombinedOutput()
		if err != nil {
			t.Fatalf("sqlite3 %s: %v\n%s", path, err, b)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 {
			t.Fatalf("sqlite3 %s: %q", path, b)
		}
		fmt.Sscanf(lines[0], "%d|%d", &n, &max)
		integrity = lines[1]
	} else {
		db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRow("SELECT count(*), coalesce(max(id), 0) FROM t").Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil {
			t.Fatal(err)
		}
	}
	if integrity != "ok" {
		t.Errorf("%s: integrity_check: %s", path, integrity)
	}
	if n != max || n < lo || n > hi {
		t.Errorf("%s: %d rows up to id %d; want rows 1..n with %d <= n <= %d (acknowledged before it began, when it returned)", path, n, max, lo, hi)
	}
}
