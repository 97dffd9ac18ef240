package main

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/cambiumdb/cambium/engine"
)

// binaryPath is the cambium command, built once for every test; home is
// the HOME it runs with.
var binaryPath, home string

func TestMain(m *testing.M) {
	if os.Getenv(writerEnv) != "" {
		// The writer of a share test: it runs no command.
		os.Exit(m.Run())
	}
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
		{"GcMissingArgs", 2, "missing arguments", []string{"gc"}},
		{"GcBadRetain", 2, `--retain "7d": want a duration in h, m or s, such as 24h, 90m or 0s (the newest version only), or forever`, []string{"--dir", dir, "gc", "a.db", "--retain", "7d"}},
		{"GcNegativeRetain", 2, `--retain "-1h": want a duration`, []string{"--dir", dir, "gc", "a.db", "--retain=-1h"}},
		{"GcShortMinAge", 2, `--min-age "30s": want a duration of at least 1m`, []string{"--dir", dir, "gc", "a.db", "--min-age", "30s"}},
		{"GcBadMinAge", 2, `--min-age "soon": want a duration`, []string{"--dir", dir, "gc", "--min-age", "soon", "a.db"}},
		{"GcBadFlag", 2, "flag provided but not defined: -dryrun", []string{"--dir", dir, "gc", "a.db", "--dryrun"}},
		{"GcNotADataDir", 1, "is not a Cambium data directory", []string{"--dir", tmp, "gc", "a.db"}},
		{"LogRemoteVersionsNoRemote", 1, "or --remote to read from an object store", []string{"--dir", tmp, "log", "--remote-versions", "a.db"}},
		{"HelpUnknown", 2, `unknown command "nope"`, []string{"help", "nope"}},
		{"BadGlobalFlag", 2, "flag provided but not defined", []string{"--nope", "ls"}},
		{"BadFlag", 2, "flag provided but not defined: -bogus", []string{"import", "--bogus", "a", "b"}},
		{"ImportMissingArgs", 2, "missing arguments", []string{"import", "a.db"}},
		{"ExportMissingArgs", 2, "missing arguments", []string{"export"}},
		{"InfoTooManyArgs", 2, "too many arguments", []string{"info", "a", "b"}},
		{"LsArgs", 2, "too many arguments", []string{"ls", "x"}},
		{"PushMissingArgs", 2, "missing arguments", []string{"push"}},
		{"PullMissingArgs", 2, "missing arguments", []string{"pull"}},
		{"PullBadWarm", 2, `--warm "maybe": want on or off`, []string{"--dir", dir, "pull", "a.db", "--warm", "maybe"}},
		{"PushWarm", 2, "flag provided but not defined: -warm", []string{"--dir", dir, "push", "a.db", "--warm", "off"}},
		{"FetchMissingArgs", 2, "missing arguments", []string{"fetch"}},
		{"HydrateMissingArgs", 2, "missing arguments", []string{"hydrate"}},
		{"ResetMissingArgs", 2, "missing arguments", []string{"reset"}},
		{"VerifyMissingArgs", 2, "missing arguments", []string{"verify"}},
		{"LogMissingArgs", 2, "missing arguments", []string{"log"}},
		{"BadAt", 2, "RFC 3339", []string{"--dir", dir, "export", "a.db", filepath.Join(tmp, "out.db"), "--at", "noon"}},
		{"VersionAndAt", 2, "pass one", []string{"--dir", dir, "export", "a.db", filepath.Join(tmp, "out.db"), "--version", "1", "--at", "2026-01-01T00:00:00Z"}},
		{"BadVersion", 2, "--version", []string{"--dir", dir, "export", "a.db", filepath.Join(tmp, "out.db"), "--version", "x"}},
		{"BadLimit", 2, "--limit", []string{"--dir", dir, "log", "a.db", "--limit", "-3"}},
		{"BadDemoRows", 2, "--rows", []string{"demo", "--rows", "3"}},
		{"BadBenchWorkload", 2, `no workload "nope"`, []string{"bench", "--only", "nope"}},
		{"BadBenchSize", 2, "want a size", []string{"bench", "--coldopen-size", "lots"}},
		// One parser for every size: the URI's, the environment's and the flags'.
		{"BenchSizeFraction", 2, `--budget "1.5MiB": want a size`, []string{"bench", "--budget", "1.5MiB"}},
		{"BenchSizeLowerCase", 2, `--budget-size "64mib": want a size`, []string{"bench", "--budget-size", "64mib"}},
		{"BenchSizeZero", 2, `--budget "0": want a size`, []string{"bench", "--budget", "0"}},
		{"BenchSizeNegative", 2, `--tenants-budget "-1GiB": want a size`, []string{"bench", "--tenants-budget=-1GiB"}},
		{"BenchSizeSpace", 2, `--budget "8 MiB": want a size`, []string{"bench", "--budget", "8 MiB"}},
		{"BadCacheBudget", 2, `"512mb"`, []string{"--dir", dir, "--cache-budget", "512mb", "ls"}},
		{"CacheBudgetFraction", 2, `"0.5GiB"`, []string{"--dir", dir, "--cache-budget", "0.5GiB", "ls"}},
		{"BadBenchLatency", 2, "want a duration", []string{"bench", "--latency", "soon"}},
		{"BadBenchBandwidth", 2, "want a rate", []string{"bench", "--bandwidth", "0"}},
		{"BadBenchTenants", 2, "want a positive number", []string{"bench", "--tenants", "-3"}},
		{"InvalidName", 2, "invalid volume name", []string{"--dir", dir, "info", "a/../b"}},
		{"InvalidNameFetch", 2, "invalid volume name", []string{"--dir", tmp, "fetch", "a/../b"}},
		{"InvalidNamePush", 2, "invalid volume name", []string{"--dir", tmp, "push", "a/../b"}},
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
	// A bad retention window or rewarm setting is a usage error that
	// names it, in every command that opens a volume or pulls.
	for _, c := range []struct{ env, args []string }{
		{[]string{"CAMBIUM_RETAIN=7d"}, []string{"info", "e.db"}},
		{[]string{"CAMBIUM_WARM=lukewarm"}, []string{"pull", "e.db"}},
	} {
		if r := cli(t, append(c.env, env...), c.args...); r.code != 2 || !strings.Contains(r.stderr, strings.Replace(c.env[0], "=", `="`, 1)+`"`) {
			t.Errorf("%s cambium %s: %s", c.env[0], strings.Join(c.args, " "), r)
		}
	}
	xdg := filepath.Join(tmp, "xdg")
	if r := cli(t, []string{"XDG_DATA_HOME=" + xdg}, "import", src, "x.db"); r.code != 0 {
		t.Fatal(r)
	}
	if ok, err := engine.IsDataDir(filepath.Join(xdg, "cambium")); !ok || err != nil {
		t.Errorf("the default data directory is not $XDG_DATA_HOME/cambium (%v)", err)
	}
}
