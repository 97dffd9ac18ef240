package govfs_test

// SQLite's own test programs, mptest and speedtest1, as the
// github.com/ncruces/go-sqlite3 module builds them into its wasm SQLite, run
// against the cambium VFS.
//
// The module lets only its own tests run them: each program is a method of
// the wasm module behind the wrapper that its unexported createWrapper
// builds, and the C library's exit, system and stdio call hooks in its
// internal testenv package. Both are reached here by go:linkname (a pull
// from a module outside the standard library, which the toolchain allows),
// the wrapper's type through the field of sqlite3.Conn that holds it. The
// linker checks the names, not the types: they are those of v0.35.6, and a
// new version of the module must be checked against this file.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/ncruces/go-sqlite3"
)

//go:linkname newWasmSQLite github.com/ncruces/go-sqlite3.createWrapper
func newWasmSQLite(ctx context.Context) (unsafe.Pointer, error)

// The hooks of github.com/ncruces/go-sqlite3/internal/testenv: the files
// fopen reads, where stdout goes, exit and system.
var (
	//go:linkname hookFS github.com/ncruces/go-sqlite3/internal/testenv.FS
	hookFS fs.FS
	//go:linkname hookOut github.com/ncruces/go-sqlite3/internal/testenv.TB
	hookOut programOutput
	//go:linkname hookExit github.com/ncruces/go-sqlite3/internal/testenv.Exit
	hookExit func(int32)
	//go:linkname hookSystem github.com/ncruces/go-sqlite3/internal/testenv.System
	hookSystem func(string) int32
)

// programOutput has the method set of testenv.Context, so that an interface
// value of it is one of that type.
type programOutput interface {
	Context() context.Context
	Logf(format string, args ...any)
}

// wasmSQLite is the part of the module's wrapper (one SQLite instance, with
// its own memory) that running a program needs.
type wasmSQLite interface {
	Xmemory() interface {
		Slice() *[]byte
		Grow(delta, max int64) int64
	}
	Xsqlite3_malloc64(size int64) int32
	Xmain_mptest(argc, argv int32) int32
	Xmain_speedtest1(argc, argv int32) int32
	Close() error
}

// wasmSQLiteType is *sqlite3_wrap.Wrapper, which newWasmSQLite returns.
var wasmSQLiteType = func() reflect.Type {
	f, ok := reflect.TypeFor[sqlite3.Conn]().FieldByName("wrp")
	if !ok || f.Type.Kind() != reflect.Pointer {
		panic("github.com/ncruces/go-sqlite3: sqlite3.Conn has no wrp pointer: a new version, check programs_test.go")
	}
	return f.Type.Elem()
}()

// exitCode is how exit(3) in a program unwinds its goroutine.
type exitCode int32

// programRun is one run of a program and of the copies of it that it
// starts with system(3), each in a goroutine, as separate processes of one
// machine.
type programRun struct {
	t   testing.TB
	mem int64 // bytes of memory each instance may use
	wg  sync.WaitGroup
	mu  struct {
		sync.Mutex
		out   []string // every line printed, in order
		exits []string // how the started copies ended, when not with 0
	}
}

// runProgram runs program (mptest or speedtest1) with args, as the module's
// wasm build has it, and returns its exit code and what it printed. fsDir is
// where fopen finds files. Copies of it started with system(3) have ended
// when it returns.
func runProgram(t testing.TB, fsDir string, mem int64, args ...string) (int32, []string) {
	r := &programRun{t: t, mem: mem}
	hookFS = os.DirFS(fsDir)
	hookOut = r
	hookExit = func(c int32) { panic(exitCode(c)) }
	hookSystem = r.system
	t.Cleanup(func() { hookOut, hookExit, hookSystem, hookFS = nil, nil, nil, nil })

	code := r.run(args)
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.mu.exits {
		t.Log(e)
	}
	return code, r.mu.out
}

func (r *programRun) Context() context.Context { return r.t.Context() }

func (r *programRun) Logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.mu.out = append(r.mu.out, line)
	r.mu.Unlock()
	r.t.Log(line)
}

// run runs args[0] in a new SQLite instance and returns its exit code.
// Closing the instance closes the files it left open, as a process's end
// does: a copy that "crashes" with exit(1) leaves no lock behind.
func (r *programRun) run(args []string) (code int32) {
	p, err := newWasmSQLite(sqlite3.WithMaxMemory(r.t.Context(), r.mem))
	if err != nil {
		r.t.Errorf("new wasm SQLite: %v", err)
		return -1
	}
	w := reflect.NewAt(wasmSQLiteType, p).Interface().(wasmSQLite)
	defer w.Close()
	defer func() {
		if e := recover(); e != nil {
			c, ok := e.(exitCode)
			if !ok {
				panic(e)
			}
			code = int32(c)
		}
	}()

	ptrs := make([]int32, len(args))
	for i, a := range args {
		ptrs[i] = w.Xsqlite3_malloc64(int64(len(a) + 1))
		mem := *w.Xmemory().Slice()
		copy(mem[ptrs[i]:], a+"\x00")
	}
	argv := w.Xsqlite3_malloc64(int64(4 * len(ptrs)))
	mem := *w.Xmemory().Slice()
	for i, p := range ptrs {
		b := mem[argv+int32(4*i):]
		b[0], b[1], b[2], b[3] = byte(p), byte(p>>8), byte(p>>16), byte(p>>24)
	}
	switch args[0] {
	case "mptest":
		return w.Xmain_mptest(int32(len(args)), argv)
	case "speedtest1":
		return w.Xmain_speedtest1(int32(len(args)), argv)
	}
	panic("unknown program " + args[0])
}

// system is system(3) for a program that starts copies of itself in the
// background, as mptest does: `mptest "DB" --client 1 ... &`.
func (r *programRun) system(cmd string) int32 {
	args := strings.Fields(cmd)
	if len(args) < 2 || args[0] != "mptest" || args[len(args)-1] != "&" {
		r.t.Errorf("system(%q): only mptest in the background runs here", cmd)
		return -1
	}
	args = args[:len(args)-1]
	for i := range args {
		args[i] = strings.Trim(args[i], `"`)
	}
	r.wg.Go(func() {
		if c := r.run(args); c != 0 {
			r.mu.Lock()
			r.mu.exits = append(r.mu.exits, fmt.Sprintf("%s: exit %d", strings.Join(args, " "), c))
			r.mu.Unlock()
		}
	})
	return 0
}

// moduleDir is the directory of github.com/ncruces/go-sqlite3 in the module
// cache, which holds the programs' scripts.
func moduleDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/ncruces/go-sqlite3").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m github.com/ncruces/go-sqlite3: %q, %v", out, err)
	}
	return filepath.Clean(dir)
}
