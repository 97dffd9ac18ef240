package main

// The tests drive real hosts: Debian's sqlite3 shell and Debian's python3
// (the system interpreter, whose sqlite3 module can load extensions), each
// loading a libcambium.so that TestMain builds once with
// go build -buildmode=c-shared.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const (
	sqliteShell = "/usr/bin/sqlite3"
	python      = "/usr/bin/python3" // not the first python3 on PATH: it may not load extensions
	sqliteExtH  = "/usr/include/sqlite3ext.h"
)

// lib is the library under test.
var lib struct {
	dir  string // holds libcambium.so
	skip string // why the library could not be built, if a tool is absent
	err  error  // the build failed
}

func TestMain(m *testing.M) {
	if os.Getenv(goChildEnv) != "" {
		// The Go program of a share test: it loads no library.
		os.Exit(m.Run())
	}
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "libcambium-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		lib.dir = dir
		lib.skip, lib.err = buildLibrary(dir)
		return m.Run()
	}())
}

// buildLibrary builds libcambium.so into dir, as make extension does.
func buildLibrary(dir string) (skip string, err error) {
	if _, err := exec.LookPath("gcc"); err != nil {
		return "gcc is not installed (scripts/install-deps installs it)", nil
	}
	if _, err := os.Stat(sqliteExtH); err != nil {
		return sqliteExtH + " is absent: install libsqlite3-dev (scripts/install-deps does)", nil
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-buildmode=c-shared", "-o", filepath.Join(dir, "libcambium.so"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -buildmode=c-shared: %v\n%s", err, out)
	}
	return "", nil
}

// libPath is what hosts load: the path without ".so", which SQLite adds.
func libPath(t testing.TB) string {
	t.Helper()
	if lib.skip != "" {
		t.Skip("cannot build libcambium.so: " + lib.skip)
	}
	if lib.err != nil {
		t.Fatal(lib.err)
	}
	return filepath.Join(lib.dir, "libcambium")
}

func needShell(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(sqliteShell); err != nil {
		t.Skipf("%s is absent: install Debian's sqlite3 (scripts/install-deps does)", sqliteShell)
	}
}

func needPython(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s is absent: install Debian's python3 (scripts/install-deps does)", python)
	}
}

// hostEnv is the environment for a host process: this one's, without any
// CAMBIUM_* setting (each test states its own), plus extra.
func hostEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAMBIUM_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// volumeURI is the URI of volume name in data directory dir.
func volumeURI(name, dir string, params ...string) string {
	u := "file:" + name + "?vfs=cambium&dir=" + dir
	for _, p := range params {
		u += "&" + p
	}
	return u
}

// hostTimeout bounds every host process, so that a hang fails the test
// instead of the whole run.
const hostTimeout = 2 * time.Minute

// shellResult is what a sqlite3 shell run printed.
type shellResult struct {
	stdout, stderr string
	err            error // exit status
}

// runShell runs the sqlite3 shell in cwd (a temporary directory if empty)
// with script on its standard input.
func runShell(t testing.TB, cwd string, env []string, script string) shellResult {
	t.Helper()
	needShell(t)
	if cwd == "" {
		cwd = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sqliteShell, "-batch")
	cmd.Dir = cwd
	cmd.Env = env
	cmd.Stdin = strings.NewReader(script)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return shellResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// sections splits a shell's output into the lines printed after each
// ".print @name" marker.
func sections(stdout string) map[string][]string {
	out := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "@"); ok {
			cur = name
			out[cur] = []string{}
			continue
		}
		out[cur] = append(out[cur], line)
	}
	return out
}

// one returns the single line of section name.
func one(t testing.TB, s map[string][]string, name string) string {
	t.Helper()
	lines, ok := s[name]
	if !ok || len(lines) != 1 {
		t.Fatalf("section @%s: want one line, got %q", name, lines)
	}
	return lines[0]
}

// status is the JSON of PRAGMA cambium_status.
type status struct {
	Volume    string `json:"volume"`
	PageSize  int    `json:"page_size"`
	PageCount int    `json:"page_count"`
	Version   uint64 `json:"version"`
	Remote    string `json:"remote"`
	State     string `json:"state"`
	Dir       string `json:"dir"`
}

func parseStatus(t testing.TB, s string) status {
	t.Helper()
	var st status
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		t.Fatalf("PRAGMA cambium_status is not JSON: %v: %q", err, s)
	}
	return st
}

// runPython runs script with Debian's python3, the library path as its
// first argument followed by args, and decodes the JSON object it prints
// last into out.
func runPython(t testing.TB, env []string, script string, out any, args ...string) (stderr string) {
	t.Helper()
	needPython(t)
	so := libPath(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "test.py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{path, so}, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), out); err != nil {
		t.Fatalf("python3 output is not JSON: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), errb.String())
	}
	return errb.String()
}
