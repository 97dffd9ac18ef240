package main

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/cambiumdb/cambium/engine"
)

// binaryPath is the cambium command, built once for every test; home is
// the HOME it runs with.
var binaryPath, home string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cambium-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "cambium")
	home = filepath.Join(dir, "home")
	out, err := exec.Command("go", "build", "-o", binaryPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build cambium: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the command with a clean environment: HOME in a temporary
// directory and no CAMBIUM_* variables but those in env ("K=V"). No test
// may use the default data directory under HOME.
func cli(t testing.TB, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binaryPath, args...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + t.TempDir()}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cambium %v: %v", args, err)
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("cambium %v panicked:\n%s", args, r)
	}
	return r
}

// ok runs the command and fails the test unless it succeeds quietly.
func ok(t testing.TB, args ...string) string {
	t.Helper()
	r := cli(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("cambium %s: %s", strings.Join(args, " "), r)
	}
	if r.stderr != "" {
		t.Fatalf("cambium %s: unexpected standard error (progress bars must be quiet off a terminal):\n%s", strings.Join(args, " "), r.stderr)
	}
	return r.stdout
}

// fails runs the command and checks that it fails with exit status code
// and that standard error says want.
func fails(t testing.TB, code int, want string, args ...string) result {
	t.Helper()
	r := cli(t, nil, args...)
	if r.code != code {
		t.Fatalf("cambium %s: want exit %d: %s", strings.Join(args, " "), code, r)
	}
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("cambium %s: standard error lacks %q: %s", strings.Join(args, " "), want, r)
	}
	return r
}

// okJSON runs the command with --json and decodes its output into v.
func okJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := ok(t, append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("cambium --json %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// makeDB writes a SQLite database file with the ncruces driver: a table
// of rows rows of random bytes and an index, with the page size given.
func makeDB(t testing.TB, path string, pageSize, rows int, seed string) []byte {
	t.Helper()
	u := url.URL{Scheme: "file", Path: path}
	db, err := sql.Open("sqlite3", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		fmt.Sprintf("PRAGMA page_size=%d", pageSize),
		"CREATE TABLE t(id INTEGER PRIMARY KEY, seed TEXT, body BLOB)",
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
			INSERT INTO t SELECT i, '%s', randomblob(200 + i %% 300) FROM n`, rows, seed),
		"CREATE INDEX t_seed ON t(seed, id)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(binary.BigEndian.Uint16(b[16:18])); got != pageSize && !(pageSize == 65536 && got == 1) {
		t.Fatalf("made a database with page size field %d, want %d", got, pageSize)
	}
	return b
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: %d bytes, want %d; first difference at offset %d", what, len(got), len(want), i)
	}
}

func fileURL(dir string) string { return "file://" + dir }

func TestHelp(t *testing.T) {
	out := ok(t, "help")
	for _, c := range []string{"import", "export", "ls", "info", "log", "push", "pull", "fetch", "hydrate", "reset", "verify", "demo", "bench", "gc is not available"} {
		if !strings.Contains(out, c) {
			t.Errorf("help lacks %q:\n%s", c, out)
		}
	}
	for _, c := range []string{"import", "export", "ls", "info", "log", "push", "pull", "fetch", "hydrate", "reset", "verify", "demo", "bench"} {
		help := ok(t, "help", c)
		if !strings.HasPrefix(help, "usage: cambium "+c) || !strings.Contains(help, "--dir") {
			t.Errorf("help %s:\n%s", c, help)
		}
		if got := ok(t, c, "-h"); got != help {
			t.Errorf("cambium %s -h differs from cambium help %s:\n%s", c, c, got)
		}
		if got := ok(t, c, "--help"); got != help {
			t.Errorf("cambium %s --help differs from cambium help %s", c, c)
		}
	}
	if out := ok(t, "--help"); !strings.Contains(out, "commands:") {
		t.Errorf("cambium --help:\n%s", out)
	}
	if out := ok(t, "help", "gc"); !strings.Contains(out, "not available") {
		t.Errorf("help gc:\n%s", out)
	}
	if out := ok(t, "help", "export"); !strings.Contains(out, "--version N") || !strings.Contains(out, "--check") {
		t.Errorf("help export lacks its flags:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	tmp := t.TempDir()
	notSQLite := filepath.Join(tmp, "notes.txt")
	os.WriteFile(notSQLite, []byte("these are not the pages you are looking for\n"), 0o644)
	dir := filepath.Join(tmp, "data")
	for _, tc := range []struct {
		name string
		code int
		want string
		args []string
	}{
		{"NoCommand", 2, "usage: cambium", nil},
		{"UnknownCommand", 2, `unknown command "frobnicate"`, []string{"frobnicate"}},
		{"Gc", 2, "gc is not available", []string{"gc"}},
		{"HelpUnknown", 2, `unknown command "nope"`, []string{"help", "nope"}},
		{"BadGlobalFlag", 2, "flag provided but not defined", []string{"--nope", "ls"}},
		{"BadFlag", 2, "flag provided but not defined: -bogus", []string{"import", "--bogus", "a", "b"}},
		{"ImportMissingArgs", 2, "missing arguments", []string{"import", "a.db"}},
		{"ExportMissingArgs", 2, "missing arguments", []string{"export"}},
		{"InfoTooManyArgs", 2, "too many arguments", []string{"info", "a", "b"}},
		{"LsArgs", 2, "too many arguments", []string{"ls", "x"}},
		{"PushMissingArgs", 2, "missing arguments", []string{"push"}},
		{"PullMissingArgs", 2, "missing arguments", []string{"pull"}},
		{"FetchMissingArgs", 2, "missing arguments", []string{"fetch"}},
		{"HydrateMissingArgs", 2, "missing arguments", []string{"hydrate"}},
		{"ResetMissingArgs", 2, "missing arguments", []string{"reset"}},
		{"VerifyMissingArgs", 2, "missing arguments", []string{"verify"}},
		{"LogMissingArgs", 2, "missing arguments", []string{"log"}},
		{"BadVersion", 2, "--version", []string{"--dir", dir, "export", "a.db", filepath.Join(tmp, "out.db"), "--version", "x"}},
		{"BadLimit", 2, "--limit", []string{"--dir", dir, "log", "a.db", "--limit", "-3"}},
		{"BadDemoRows", 2, "--rows", []string{"demo", "--rows", "3"}},
		{"BadBenchWorkload", 2, `no workload "nope"`, []string{"bench", "--only", "nope"}},
		{"BadBenchSize", 2, "want a size", []string{"bench", "--coldopen-size", "lots"}},
		{"BadBenchLatency", 2, "want a duration", []string{"bench", "--latency", "soon"}},
		{"BadBenchBandwidth", 2, "want a rate", []string{"bench", "--bandwidth", "0"}},
		{"BadBenchTenants", 2, "want a positive number", []string{"bench", "--tenants", "-3"}},
		{"InvalidName", 2, "invalid volume name", []string{"--dir", dir, "info", "a/../b"}},
		{"InvalidNameImport", 2, "invalid volume name", []string{"--dir", dir, "import", notSQLite, "/abs"}},
		{"BadRemoteScheme", 2, "unknown scheme", []string{"--dir", dir, "--remote", "ftp://host/x", "ls"}},
		{"BadRemoteHost", 2, `host "rel" is not allowed`, []string{"--dir", dir, "ls", "--remote", "file://rel/x"}},
		{"MissingFile", 1, "no such file", []string{"--dir", dir, "import", filepath.Join(tmp, "missing.db"), "a.db"}},
		{"NotSQLite", 1, "is not a SQLite database", []string{"--dir", dir, "import", notSQLite, "a.db"}},
		{"NotADataDir", 1, "is not a Cambium data directory", []string{"--dir", tmp, "info", "a.db"}},
		{"LsNotADataDir", 1, "is not a Cambium data directory", []string{"--dir", filepath.Join(tmp, "nowhere"), "ls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fails(t, tc.code, tc.want, tc.args...)
			if tc.code == 2 && tc.name != "NoCommand" && !strings.Contains(r.stderr, "usage") && !strings.Contains(r.stderr, "cambium help") {
				t.Errorf("a usage error should say how to get help: %s", r)
			}
			if r.stdout != "" {
				t.Errorf("a failed command printed on standard output: %s", r)
			}
		})
	}
	// Read-only commands leave a mistyped directory alone.
	if _, err := os.Stat(filepath.Join(tmp, "nowhere")); err == nil {
		t.Errorf("ls created the data directory it was asked to list")
	}
}

func TestImportExport_RoundTrip(t *testing.T) {
	for _, pageSize := range []int{512, 4096, 65536} {
		t.Run(fmt.Sprintf("page_size=%d", pageSize), func(t *testing.T) {
			tmp := t.TempDir()
			dir := filepath.Join(tmp, "data")
			src := filepath.Join(tmp, "src.db")
			want := makeDB(t, src, pageSize, 1500, "one")
			var imp importResult
			okJSON(t, &imp, "--dir", dir, "import", src, "acme/orders.db")
			if imp.Version != 1 || imp.PageSize != pageSize || imp.Bytes != int64(len(want)) || imp.Pages*int64(pageSize) != int64(len(want)) {
				t.Fatalf("import: %+v for a %d-byte file", imp, len(want))
			}
			out := filepath.Join(tmp, "out.db")
			var exp exportResult
			okJSON(t, &exp, "--dir", dir, "export", "acme/orders.db", out, "--check")
			if exp.Version != 1 || exp.Integrity != "ok" || exp.Bytes != int64(len(want)) {
				t.Fatalf("export: %+v", exp)
			}
			sameBytes(t, "exported file", readFile(t, out), want)

			fails(t, 1, "exists; pass --force", "--dir", dir, "export", "acme/orders.db", out)
			fails(t, 1, "already has", "--dir", dir, "import", src, "acme/orders.db")

			// --force replaces the contents as a new version; the old one
			// stays readable.
			src2 := filepath.Join(tmp, "src2.db")
			want2 := makeDB(t, src2, pageSize, 700, "two")
			if got := ok(t, "--dir", dir, "import", "--force", src2, "acme/orders.db"); !strings.Contains(got, "version 2") {
				t.Fatalf("import --force: %s", got)
			}
			ok(t, "--dir", dir, "export", "--force", "acme/orders.db", out)
			sameBytes(t, "exported version 2", readFile(t, out), want2)
			ok(t, "--dir", dir, "export", "acme/orders.db", out, "--version", "1", "--force", "--check")
			sameBytes(t, "exported version 1", readFile(t, out), want)
			fails(t, 1, "no such version", "--dir", dir, "export", "acme/orders.db", filepath.Join(tmp, "v9.db"), "--version", "9")
			if _, err := os.Stat(filepath.Join(tmp, "v9.db")); err == nil {
				t.Errorf("a failed export left its file behind")
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, ".*cambium-*")); len(left) > 0 {
				t.Errorf("exports left temporary files: %v", left)
			}
		})
	}
}

func TestImport_Refuses(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	src := filepath.Join(tmp, "src.db")
	good := makeDB(t, src, 4096, 300, "x")

	t.Run("Truncated", func(t *testing.T) {
		p := filepath.Join(tmp, "short.db")
		os.WriteFile(p, good[:len(good)-100], 0o644)
		fails(t, 1, "not a whole number", "--dir", dir, "import", p, "short.db")
		p2 := filepath.Join(tmp, "short2.db")
		os.WriteFile(p2, good[:len(good)-4096], 0o644)
		fails(t, 1, "truncated", "--dir", dir, "import", p2, "short2.db")
	})
	t.Run("BadPageSize", func(t *testing.T) {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint16(b[16:], 1000)
		p := filepath.Join(tmp, "ps.db")
		os.WriteFile(p, b, 0o644)
		fails(t, 1, "page size 1000", "--dir", dir, "import", p, "ps.db")
	})
	t.Run("HotJournal", func(t *testing.T) {
		p := filepath.Join(tmp, "hot.db")
		os.WriteFile(p, good, 0o644)
		os.WriteFile(p+"-journal", append(bytes.Clone(journalMagic), make([]byte, 512)...), 0o644)
		fails(t, 1, "hot rollback journal", "--dir", dir, "import", p, "hot.db")
		// A journal that holds nothing (zeroed header) is not hot.
		os.WriteFile(p+"-journal", make([]byte, 512), 0o644)
		ok(t, "--dir", dir, "import", p, "hot.db")
	})
	t.Run("WAL", func(t *testing.T) {
		b := bytes.Clone(good)
		b[18], b[19] = 2, 2
		p := filepath.Join(tmp, "wal.db")
		os.WriteFile(p, b, 0o644)
		os.WriteFile(p+"-wal", []byte("frames not checkpointed yet"), 0o644)
		fails(t, 1, "checkpoint first", "--dir", dir, "import", p, "wal.db")
		// Checkpointed (no -wal): imported in rollback-journal mode.
		os.Remove(p + "-wal")
		if out := ok(t, "--dir", dir, "import", p, "wal.db"); !strings.Contains(out, "WAL mode") {
			t.Errorf("import of a WAL-mode file does not say it converted it: %s", out)
		}
		out := filepath.Join(tmp, "wal-out.db")
		ok(t, "--dir", dir, "export", "--check", "wal.db", out)
		sameBytes(t, "exported WAL-mode import", readFile(t, out), good)
	})
	t.Run("PageSizeMismatch", func(t *testing.T) {
		p := filepath.Join(tmp, "big.db")
		makeDB(t, p, 8192, 50, "y")
		fails(t, 1, "page size is fixed", "--dir", dir, "import", "--force", p, "hot.db")
	})
}

// TestReplication covers push, pull, fetch, hydrate, reset, ls, info and
// log between two data directories and a file:// remote.
func TestReplication(t *testing.T) {
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	rem := fileURL(filepath.Join(tmp, "remote"))
	const name = "tenant 7/orders.db" // escaped in object keys
	files := make([][]byte, 4)
	srcs := make([]string, 4)
	for i := range files {
		srcs[i] = filepath.Join(tmp, fmt.Sprintf("v%d.db", i+1))
		files[i] = makeDB(t, srcs[i], 4096, 400+200*i, fmt.Sprint("gen", i))
	}
	exportEquals := func(dir string, want []byte, extra ...string) {
		t.Helper()
		out := filepath.Join(tmp, "check.db")
		os.Remove(out)
		ok(t, append([]string{"--dir", dir, "export", name, out}, extra...)...)
		sameBytes(t, "export from "+filepath.Base(dir), readFile(t, out), want)
	}

	ok(t, "--dir", a, "import", srcs[0], name)
	fails(t, 2, "has no remote", "--dir", a, "push", name)
	var push pushResult
	okJSON(t, &push, "--dir", a, "--remote", rem, "push", name)
	if push.From != 0 || push.To != 1 || push.Pages != len(files[0])/4096 || push.BytesWritten <= 0 || push.Remote != rem {
		t.Fatalf("push: %+v", push)
	}
	// The volume remembers its remote.
	okJSON(t, &push, "--dir", a, "push", name)
	if push.From != 1 || push.To != 1 || push.Pages != 0 {
		t.Fatalf("push with nothing new: %+v", push)
	}
	fails(t, 1, "replicates with another remote", "--dir", a, "--remote", fileURL(filepath.Join(tmp, "other")), "push", name)

	// A replica pulls (metadata only), then hydrates everything.
	var pull pullResult
	okJSON(t, &pull, "--dir", b, "--remote", rem, "pull", name)
	if pull.From != 0 || pull.To != 1 || pull.PagesChanged != len(files[0])/4096 || pull.BytesRead <= 0 || pull.BytesRead > int64(len(files[0]))/4 {
		t.Fatalf("pull: %+v (a pull reads metadata, not pages)", pull)
	}
	var hyd hydrateResult
	okJSON(t, &hyd, "--dir", b, "hydrate", name)
	if hyd.Pages != len(files[0])/4096 || hyd.Frames == 0 || hyd.BytesRead <= 0 {
		t.Fatalf("hydrate: %+v", hyd)
	}
	okJSON(t, &hyd, "--dir", b, "hydrate", name)
	if hyd.Pages != 0 {
		t.Fatalf("second hydrate: %+v", hyd)
	}
	exportEquals(b, files[0])

	// The writer moves on; the replica fetches, sees it is behind, pulls
	// and reads the new version lazily.
	ok(t, "--dir", a, "import", "--force", srcs[1], name)
	var info infoResult
	okJSON(t, &info, "--dir", a, "info", name)
	if info.State != "ahead" || info.Version != 2 || info.PushedVersion != 1 {
		t.Fatalf("info after a local commit: %+v", info)
	}
	ok(t, "--dir", a, "push", name)
	var fetch fetchResult
	okJSON(t, &fetch, "--dir", b, "fetch", name)
	if fetch.Version != 1 || fetch.RemoteVersion != 2 || fetch.Commits != 1 {
		t.Fatalf("fetch: %+v", fetch)
	}
	okJSON(t, &info, "--dir", b, "info", name)
	if info.State != "behind" || info.RemoteVersion != 2 || info.Remote != rem || info.PageSize != 4096 {
		t.Fatalf("info on a replica that fetched: %+v", info)
	}
	var ls []lsEntry
	okJSON(t, &ls, "--dir", b, "ls")
	if len(ls) != 1 || ls[0].Volume != name || ls[0].State != "behind" || ls[0].Version != 1 {
		t.Fatalf("ls: %+v", ls)
	}
	if out := ok(t, "--dir", b, "ls"); !strings.Contains(out, name) || !strings.Contains(out, "behind") {
		t.Fatalf("ls:\n%s", out)
	}
	okJSON(t, &pull, "--dir", b, "pull", name)
	if pull.From != 1 || pull.To != 2 {
		t.Fatalf("pull: %+v", pull)
	}
	exportEquals(b, files[1])
	exportEquals(b, files[0], "--version", "1")

	// A remote-only volume: ls --remote lists it, info and export read it
	// without a data directory.
	other := filepath.Join(tmp, "c")
	okJSON(t, &ls, "--dir", other, "--remote", rem, "ls")
	if len(ls) != 1 || ls[0].Volume != name || ls[0].State != "remote-only" || ls[0].Version != 2 || ls[0].RemoteObjects == 0 {
		t.Fatalf("ls --remote with no data directory: %+v", ls)
	}
	okJSON(t, &info, "--dir", other, "--remote", rem, "info", name)
	if info.State != "remote-only" || info.Version != 2 || info.Commits != 2 {
		t.Fatalf("info of a remote-only volume: %+v", info)
	}
	exportEquals(other, files[0], "--remote", rem, "--version", "1")
	exportEquals(other, files[1], "--remote", rem)
	if _, err := os.Stat(other); err == nil {
		t.Errorf("reading from the remote alone created a data directory")
	}

	// Divergence: the replica commits while the writer pushes; the
	// replica's push loses, and reset makes it follow the remote again.
	ok(t, "--dir", a, "import", "--force", srcs[2], name)
	ok(t, "--dir", a, "push", name)
	ok(t, "--dir", b, "import", "--force", srcs[3], name)
	fails(t, 1, "push them first", "--dir", b, "pull", name) // unpushed commits
	fails(t, 1, "diverged", "--dir", b, "push", name)
	okJSON(t, &info, "--dir", b, "info", name)
	if info.State != "diverged" {
		t.Fatalf("info after losing a push: %+v", info)
	}
	var reset resetResult
	okJSON(t, &reset, "--dir", b, "reset", name)
	if reset.Discarded != 1 || reset.From != 2 || reset.To != 3 {
		t.Fatalf("reset: %+v", reset)
	}
	exportEquals(b, files[2])

	var log []logEntry
	okJSON(t, &log, "--dir", a, "log", name)
	if len(log) != 3 || log[0].Version != 3 || log[2].Version != 1 || !log[0].Pushed || log[2].Parent != 0 || log[0].PagesChanged == 0 {
		t.Fatalf("log: %+v", log)
	}
	okJSON(t, &log, "--dir", a, "log", "--limit", "1", name)
	if len(log) != 1 || log[0].Version != 3 {
		t.Fatalf("log --limit 1: %+v", log)
	}
	if out := ok(t, "--dir", a, "log", name); !regexp.MustCompile(`(?m)^3\s+2\s`).MatchString(out) {
		t.Fatalf("log:\n%s", out)
	}
	// The text forms of the replication commands.
	if out := ok(t, "--dir", a, "push", name); !strings.Contains(out, "nothing to push") {
		t.Errorf("push:\n%s", out)
	}
	if out := ok(t, "--dir", b, "pull", name); !strings.Contains(out, "up to date at version 3") {
		t.Errorf("pull:\n%s", out)
	}
	if out := ok(t, "--dir", b, "fetch", name); !strings.Contains(out, "nothing newer") {
		t.Errorf("fetch:\n%s", out)
	}
	if out := ok(t, "--dir", b, "info", name); !strings.Contains(out, "synced") {
		t.Errorf("info:\n%s", out)
	}
}

// TestEnvironment checks that CAMBIUM_DIR and CAMBIUM_REMOTE stand in for
// the flags, and that the default directory is the VFS's.
func TestEnvironment(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src.db")
	makeDB(t, src, 4096, 100, "env")
	dir, rem := filepath.Join(tmp, "data"), fileURL(filepath.Join(tmp, "remote"))
	env := []string{"CAMBIUM_DIR=" + dir, "CAMBIUM_REMOTE=" + rem}
	if r := cli(t, env, "import", src, "e.db"); r.code != 0 {
		t.Fatal(r)
	}
	if r := cli(t, env, "push", "e.db"); r.code != 0 || !strings.Contains(r.stdout, rem) {
		t.Fatal(r)
	}
	if r := cli(t, env, "--json", "info", "e.db"); r.code != 0 || !strings.Contains(r.stdout, `"state":"synced"`) {
		t.Fatal(r)
	}
	xdg := filepath.Join(tmp, "xdg")
	if r := cli(t, []string{"XDG_DATA_HOME=" + xdg}, "import", src, "x.db"); r.code != 0 {
		t.Fatal(r)
	}
	if ok, err := engine.IsDataDir(filepath.Join(xdg, "cambium")); !ok || err != nil {
		t.Errorf("the default data directory is not $XDG_DATA_HOME/cambium (%v)", err)
	}
}

// corrupt flips bytes in the middle of the file at path.
func corrupt(t testing.TB, path string) {
	t.Helper()
	b := readFile(t, path)
	for i := len(b) / 2; i < len(b)/2+16; i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src.db")
	want := makeDB(t, src, 4096, 1200, "v")
	pages := len(want) / 4096
	rem := filepath.Join(tmp, "remote")

	t.Run("OK", func(t *testing.T) {
		dir := filepath.Join(tmp, "ok")
		ok(t, "--dir", dir, "import", src, "v.db")
		out := ok(t, "--dir", dir, "verify", "v.db")
		if !strings.HasPrefix(out, fmt.Sprintf("ok: %s pages, 0 frames verified", count(pages))) {
			t.Fatalf("verify:\n%s", out)
		}
		ok(t, "--dir", dir, "--remote", fileURL(rem), "push", "v.db")
		var res verifyResult
		okJSON(t, &res, "--dir", dir, "--remote", fileURL(rem), "verify", "v.db")
		if !res.OK || res.LocalPages != pages || res.Frames != pages || res.RemoteVersion != 1 || res.FrameBytes == 0 || len(res.Problems) != 0 {
			t.Fatalf("verify --remote: %+v", res)
		}
		// A replica that has fetched nothing verifies the remote's frames.
		replica := filepath.Join(tmp, "replica")
		ok(t, "--dir", replica, "--remote", fileURL(rem), "pull", "v.db")
		okJSON(t, &res, "--dir", replica, "verify", "v.db")
		if !res.OK || res.RemotePages != pages || res.LocalPages != 0 {
			t.Fatalf("verify of a replica without --remote: %+v", res)
		}
	})

	t.Run("CorruptLocalPage", func(t *testing.T) {
		dir := filepath.Join(tmp, "local")
		ok(t, "--dir", dir, "import", src, "v.db")
		// Move every page from the write-ahead log into table files,
		// whose blocks carry checksums, then damage one.
		e, err := engine.Open(engine.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Flush(); err != nil {
			t.Fatal(err)
		}
		e.Close()
		var tables []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".sst") {
				tables = append(tables, p)
			}
			return nil
		})
		if len(tables) == 0 {
			t.Fatal("no table file after a flush")
		}
		for _, p := range tables {
			corrupt(t, p)
		}
		r := fails(t, 1, "1 problem (listed above)", "--dir", dir, "verify", "v.db")
		if !strings.Contains(r.stdout, "FAILED") || !regexp.MustCompile(`page \d+: .*checksum mismatch`).MatchString(r.stdout) {
			t.Fatalf("verify of a damaged table file:\n%s", r)
		}
		if strings.Contains(r.stderr, "on-disk corruption") {
			t.Errorf("verify repeats the store's own corruption report on standard error:\n%s", r.stderr)
		}
		var res verifyResult
		r = cli(t, nil, "--json", "--dir", dir, "verify", "v.db")
		if r.code != 1 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.OK || res.ProblemCount != 1 || res.LocalPages != pages-1 {
			t.Fatalf("verify --json of a damaged table file: %+v\n%s", res, r)
		}
		// Reading the damaged page is an error, not a crash or zeros.
		fails(t, 1, "checksum mismatch", "--dir", dir, "export", "v.db", filepath.Join(tmp, "bad.db"))
	})

	t.Run("CorruptRemoteSegment", func(t *testing.T) {
		dir := filepath.Join(tmp, "writer")
		rem := filepath.Join(tmp, "remote2")
		ok(t, "--dir", dir, "import", src, "v.db")
		ok(t, "--dir", dir, "--remote", fileURL(rem), "push", "v.db")
		segs, _ := filepath.Glob(filepath.Join(rem, "v", "v.db", "s", "*"))
		if len(segs) != 1 {
			t.Fatalf("segments: %v", segs)
		}
		corrupt(t, segs[0])
		// The local copy is sound; the remote's is not.
		ok(t, "--dir", dir, "verify", "v.db")
		r := fails(t, 1, "problem", "--dir", dir, "--remote", fileURL(rem), "verify", "v.db")
		if !regexp.MustCompile(`segment v/v\.db/s/[0-9a-f]{32}: frame of pages \d+\.\.\d+ at offset \d+: .*checksum`).MatchString(r.stdout) {
			t.Fatalf("verify --remote of a damaged segment:\n%s", r)
		}
		// A replica reading the damaged frame gets an error naming it.
		replica := filepath.Join(tmp, "replica2")
		ok(t, "--dir", replica, "--remote", fileURL(rem), "pull", "v.db")
		fails(t, 1, "corrupt remote data", "--dir", replica, "hydrate", "v.db")
	})
}

func TestDemo(t *testing.T) {
	r := cli(t, nil, "demo")
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{
		"1. The writer creates", "Pushed versions", "2. The replica opens", "It downloaded",
		"4. The replica pulls", "of metadata", "5. Time travel", "-> 40 orders, 4202 items, shipped",
		"-> 40 orders, 202 items, new", "$ cambium --dir $REPLICA --remote $REMOTE verify", "ok: ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// The replica answered the first query with a small fraction of the
	// database.
	m := regexp.MustCompile(`It downloaded .* requests \(\d+ pages\): ([0-9.]+)% of the`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("demo output lacks the first query's download:\n%s", r.stdout)
	}
	var pct float64
	fmt.Sscan(m[1], &pct)
	if pct <= 0 || pct > 2 {
		t.Errorf("the first query downloaded %.1f%% of the database", pct)
	}
	m = regexp.MustCompile(`removed (\S+)\.`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("demo does not say what it removed:\n%s", r.stdout)
	}
	if _, err := os.Stat(m[1]); err == nil {
		t.Errorf("demo left %s behind", m[1])
	}
	if t.Failed() {
		t.Log(r)
	}

	// With a remote of the user's, the demo leaves its volume there.
	rem := fileURL(t.TempDir())
	r = cli(t, []string{"CAMBIUM_REMOTE=" + rem}, "demo", "--rows", "500")
	if r.code != 0 || !strings.Contains(r.stdout, "stays in "+rem) {
		t.Fatal(r)
	}
	var ls []lsEntry
	okJSON(t, &ls, "--dir", t.TempDir(), "--remote", rem, "ls")
	if len(ls) != 1 || !strings.HasPrefix(ls[0].Volume, "demo/orders-") || ls[0].Version == 0 {
		t.Fatalf("ls of the demo's remote: %+v", ls)
	}
}

// TestBench runs cambium bench --quick, every workload, as the issue's
// check does, and reads its JSON and charts: each workload family present,
// each result with Cambium's figures and, for each baseline, the
// baseline's figures and a ratio.
func TestBench(t *testing.T) {
	dir := t.TempDir()
	path, charts := filepath.Join(dir, "bench.json"), filepath.Join(dir, "charts")
	start := time.Now()
	r := cli(t, nil, "bench", "--quick", "--json", path, "--svg", charts)
	if r.code != 0 {
		t.Fatal(r)
	}
	t.Logf("cambium bench --quick took %s", time.Since(start).Round(time.Second))
	for _, w := range []string{"pointread", "commit/normal", "commit/full", "fastforward/", "coldopen/", "tenants/", "ratio"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("bench table lacks %q:\n%s", w, r.stdout)
		}
	}
	var report struct {
		Date    string
		Command string
		Results []struct {
			Workload    string
			Cambium     struct{ Ops int }
			Comparisons []struct {
				Baseline string
				Figures  struct{ Ops int }
				Ratio    float64
			}
			Notes []string
		}
	}
	if err := json.Unmarshal(readFile(t, path), &report); err != nil || report.Date == "" || !strings.Contains(report.Command, "--quick") {
		t.Fatalf("bench --json: %v %+v", err, report)
	}
	families := map[string]bool{}
	litestream := false
	for _, res := range report.Results {
		family, _, _ := strings.Cut(res.Workload, "/")
		families[family] = true
		if res.Cambium.Ops == 0 {
			t.Errorf("%s: no Cambium figures", res.Workload)
		}
		if len(res.Comparisons) == 0 && len(res.Notes) == 0 {
			t.Errorf("%s: neither a baseline nor a note saying why not", res.Workload)
		}
		for _, c := range res.Comparisons {
			if c.Figures.Ops == 0 || !(c.Ratio > 0) {
				t.Errorf("%s vs %s: figures %+v, ratio %v", res.Workload, c.Baseline, c.Figures, c.Ratio)
			}
			litestream = litestream || strings.HasPrefix(c.Baseline, "Litestream")
		}
	}
	for _, f := range []string{"pointread", "commit", "fastforward", "coldopen", "tenants"} {
		if !families[f] {
			t.Errorf("bench --json has no %s results", f)
		}
		if _, err := os.Stat(filepath.Join(charts, f+".svg")); err != nil {
			t.Errorf("no chart for %s: %v", f, err)
		}
	}
	if !litestream {
		t.Errorf("no Litestream baseline in fastforward (install-deps installs it):\n%s", r.stdout)
	}
	var results []struct{ Workload string }
	out := ok(t, "--json", "bench", "--quick", "--only", "pointread")
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 || results[0].Workload != "pointread" {
		t.Fatalf("cambium --json bench: %v\n%s", err, out)
	}
}
