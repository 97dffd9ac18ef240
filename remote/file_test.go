package remote_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/remote/remotetest"
)

func TestFileStore_Conformance(t *testing.T) {
	remotetest.Run(t, func(t testing.TB) remote.Store { return newFileStore(t, t.TempDir()) })
}

func newFileStore(t testing.TB, root string) *remote.FileStore {
	t.Helper()
	s, err := remote.NewFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewFileStore(t *testing.T) {
	t.Run("CreatesRoot", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "a", "b")
		s := newFileStore(t, root)
		if s.Root() != root {
			t.Errorf("Root() = %q, want %q", s.Root(), root)
		}
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			t.Errorf("root not created: %v", err)
		}
	})
	t.Run("RelativeRoot", func(t *testing.T) {
		if _, err := remote.NewFileStore("relative/dir"); err == nil || !strings.Contains(err.Error(), "absolute") {
			t.Errorf("NewFileStore(relative) = %v, want an error saying the root must be absolute", err)
		}
	})
	t.Run("RootIsFile", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(root, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := remote.NewFileStore(root); err == nil {
			t.Error("NewFileStore over a file succeeded")
		}
	})
}

func TestFileStore_TempFiles(t *testing.T) {
	t.Run("LeftoverNeverListed", func(t *testing.T) {
		root := t.TempDir()
		s := newFileStore(t, root)
		leftover := filepath.Join(root, ".cambium-tmp", "obj-123")
		if err := os.WriteFile(leftover, []byte("half an obj"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(t.Context(), "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		objs, err := remote.ListAll(t.Context(), s, "")
		if err != nil || len(objs) != 1 || objs[0].Key != "k" {
			t.Errorf("ListAll = %v, %v; want only k", objs, err)
		}
		for _, prefix := range []string{".cambium-tmp/", ".cambium-tmp/obj", ".cam"} {
			page, err := s.List(t.Context(), remote.ListOptions{Prefix: prefix})
			if err != nil || len(page.Objects) != 0 {
				t.Errorf("List(prefix %q) = %v, %v; want nothing", prefix, page.Objects, err)
			}
		}
	})
	t.Run("StaleRemovedOnOpen", func(t *testing.T) {
		root := t.TempDir()
		newFileStore(t, root)
		stale := filepath.Join(root, ".cambium-tmp", "obj-stale")
		fresh := filepath.Join(root, ".cambium-tmp", "obj-fresh")
		for _, p := range []string{stale, fresh} {
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-2 * time.Hour)
		if err := os.Chtimes(stale, old, old); err != nil {
			t.Fatal(err)
		}
		newFileStore(t, root)
		if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale temp file still there: %v", err)
		}
		if _, err := os.Stat(fresh); err != nil {
			t.Errorf("fresh temp file removed: %v", err)
		}
	})
	t.Run("NoneLeftAfterWrites", func(t *testing.T) {
		root := t.TempDir()
		s := newFileStore(t, root)
		ctx := t.Context()
		if err := s.Put(ctx, "a", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if err := s.Create(ctx, "b", []byte("2")); err != nil {
			t.Fatal(err)
		}
		if err := s.Create(ctx, "b", []byte("3")); !errors.Is(err, remote.ErrExists) {
			t.Fatalf("second Create = %v", err)
		}
		entries, err := os.ReadDir(filepath.Join(root, ".cambium-tmp"))
		if err != nil || len(entries) != 0 {
			t.Errorf("temp dir holds %v, %v; want nothing", entries, err)
		}
	})
	t.Run("TempDirRemoved", func(t *testing.T) {
		root := t.TempDir()
		s := newFileStore(t, root)
		if err := os.RemoveAll(filepath.Join(root, ".cambium-tmp")); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(t.Context(), "k", []byte("v")); err != nil {
			t.Errorf("Put after the temp dir was removed: %v", err)
		}
	})
}

func TestFileStore_Keys(t *testing.T) {
	t.Run("CannotEscapeRoot", func(t *testing.T) {
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		s := newFileStore(t, root)
		for _, key := range []string{"..", "../escaped", "a/../../escaped", "a/../b", "/etc/passwd", "./x"} {
			if err := s.Put(t.Context(), key, []byte("x")); !errors.Is(err, remote.ErrInvalidKey) {
				t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
			}
			if _, err := s.Get(t.Context(), key); !errors.Is(err, remote.ErrInvalidKey) {
				t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
			}
		}
		entries, err := os.ReadDir(parent)
		if err != nil || len(entries) != 1 || entries[0].Name() != "root" {
			t.Errorf("parent of root holds %v, %v; want only root", entries, err)
		}
	})
	t.Run("ReservedTempDir", func(t *testing.T) {
		s := newFileStore(t, t.TempDir())
		for _, key := range []string{".cambium-tmp", ".cambium-tmp/obj-1"} {
			err := s.Put(t.Context(), key, []byte("x"))
			if !errors.Is(err, remote.ErrInvalidKey) || !strings.Contains(err.Error(), "reserved") {
				t.Errorf("Put(%q) = %v, want ErrInvalidKey saying it is reserved", key, err)
			}
		}
		if err := s.Put(t.Context(), "x/.cambium-tmp", []byte("x")); err != nil {
			t.Errorf("Put of a deeper .cambium-tmp part: %v", err)
		}
	})
	t.Run("LongPart", func(t *testing.T) {
		s := newFileStore(t, t.TempDir())
		ok := strings.Repeat("p", 255)
		if err := s.Put(t.Context(), ok, []byte("x")); err != nil {
			t.Errorf("Put of a 255 byte part: %v", err)
		}
		err := s.Put(t.Context(), "a/"+ok+"p", []byte("x"))
		if !errors.Is(err, remote.ErrInvalidKey) || !strings.Contains(err.Error(), "256 byte") {
			t.Errorf("Put of a 256 byte part = %v, want ErrInvalidKey naming the length", err)
		}
		page, err := s.List(t.Context(), remote.ListOptions{Prefix: ok + "p/"})
		if err != nil || len(page.Objects) != 0 {
			t.Errorf("List under a 256 byte part = %v, %v; want nothing", page.Objects, err)
		}
	})
	t.Run("ForeignFilesNotListed", func(t *testing.T) {
		root := t.TempDir()
		s := newFileStore(t, root)
		for _, name := range []string{"back\\slash", "ctl\x01"} {
			if err := os.WriteFile(filepath.Join(root, name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("/etc/hostname", filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(root, "emptydir"), 0o755); err != nil {
			t.Fatal(err)
		}
		objs, err := remote.ListAll(t.Context(), s, "")
		if err != nil || len(objs) != 0 {
			t.Errorf("ListAll = %v, %v; want nothing", objs, err)
		}
	})
}

func TestFileStore_Collision(t *testing.T) {
	for _, tc := range []struct {
		name, first, second, names string
	}{
		{"ObjectOverDirectory", "a/b", "a", `"a/"`},
		{"ObjectUnderObject", "a", "a/b", `"a"`},
		{"DeepUnderObject", "a/b", "a/b/c/d", `"a/b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := newFileStore(t, root)
			ctx := t.Context()
			if err := s.Put(ctx, tc.first, []byte("first")); err != nil {
				t.Fatal(err)
			}
			for method, write := range map[string]func(string, []byte) error{
				"Put":    func(k string, d []byte) error { return s.Put(ctx, k, d) },
				"Create": func(k string, d []byte) error { return s.Create(ctx, k, d) },
			} {
				err := write(tc.second, []byte("second"))
				if !errors.Is(err, remote.ErrInvalidKey) || !strings.Contains(err.Error(), tc.names) {
					t.Errorf("%s(%q) = %v; want ErrInvalidKey naming %s", method, tc.second, err, tc.names)
				}
			}
			if got, err := s.Get(ctx, tc.first); err != nil || string(got) != "first" {
				t.Errorf("Get(%q) = %q, %v; want it unchanged", tc.first, got, err)
			}
			if _, err := s.Get(ctx, tc.second); !errors.Is(err, remote.ErrNotFound) {
				t.Errorf("Get(%q) = %v, want ErrNotFound", tc.second, err)
			}
			if err := s.Delete(ctx, tc.second); err != nil {
				t.Errorf("Delete(%q) = %v, want nil", tc.second, err)
			}
			objs, err := remote.ListAll(ctx, s, "")
			if err != nil || len(objs) != 1 || objs[0].Key != tc.first {
				t.Errorf("ListAll = %v, %v; want only %s", objs, err, tc.first)
			}
			entries, err := os.ReadDir(filepath.Join(root, ".cambium-tmp"))
			if err != nil || len(entries) != 0 {
				t.Errorf("temp dir holds %v, %v; want nothing", entries, err)
			}
		})
	}
	t.Run("EmptyDirectoryGivesWay", func(t *testing.T) {
		root := t.TempDir()
		s := newFileStore(t, root)
		if err := os.MkdirAll(filepath.Join(root, "a", "b"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := s.Create(t.Context(), "a/b", []byte("x")); err != nil {
			t.Errorf("Create over an empty directory: %v", err)
		}
	})
}

func TestFileStore_Delete(t *testing.T) {
	t.Run("RemovesEmptyDirectories", func(t *testing.T) {
		root := t.TempDir()
		s := newFileStore(t, root)
		ctx := t.Context()
		for _, key := range []string{"a/b/c/d", "a/x"} {
			if err := s.Put(ctx, key, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Delete(ctx, "a/b/c/d"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(root, "a", "b")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a/b still there after its last object went: %v", err)
		}
		if _, err := os.Stat(filepath.Join(root, "a", "x")); err != nil {
			t.Errorf("a/x lost: %v", err)
		}
		if err := s.Delete(ctx, "a/x"); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(root)
		if err != nil || len(entries) != 1 || entries[0].Name() != ".cambium-tmp" {
			t.Errorf("root holds %v, %v; want only .cambium-tmp", entries, err)
		}
	})
	t.Run("DirectoryIsNotAnObject", func(t *testing.T) {
		s := newFileStore(t, t.TempDir())
		ctx := t.Context()
		if err := s.Put(ctx, "a/b", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "a"); err != nil {
			t.Fatalf("Delete of a directory key = %v, want nil", err)
		}
		if got, err := s.Get(ctx, "a/b"); err != nil || string(got) != "x" {
			t.Errorf("Get(a/b) after Delete(a) = %q, %v", got, err)
		}
	})
}

// TestFileStore_CreateAcrossProcesses races Creates of one key from several
// processes sharing a root: link(2) must let exactly one win.
func TestFileStore_CreateAcrossProcesses(t *testing.T) {
	if helper := os.Getenv("CAMBIUM_FILE_CREATE_HELPER"); helper != "" {
		fileCreateHelper(t, helper)
		return
	}
	const procs, rounds = 6, 3
	root := t.TempDir()
	for round := range rounds {
		key := fmt.Sprintf("race/%d", round)
		start := time.Now().Add(500 * time.Millisecond).UnixNano()
		cmds := make([]*exec.Cmd, procs)
		outs := make([]strings.Builder, procs)
		for i := range cmds {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFileStore_CreateAcrossProcesses$", "-test.count=1")
			cmd.Env = append(os.Environ(), fmt.Sprintf("CAMBIUM_FILE_CREATE_HELPER=%s|%s|%d|%d", root, key, i, start))
			cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds[i] = cmd
		}
		winner := -1
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("helper %d: %v\n%s", i, err, outs[i].String())
			}
			switch out := outs[i].String(); {
			case strings.Contains(out, "RESULT created"):
				if winner >= 0 {
					t.Errorf("round %d: processes %d and %d both created %s", round, winner, i, key)
				}
				winner = i
			case !strings.Contains(out, "RESULT exists"):
				t.Fatalf("round %d: helper %d said:\n%s", round, i, out)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no process created %s", round, key)
		}
		got, err := newFileStore(t, root).Get(t.Context(), key)
		if want := fmt.Sprintf("process %d", winner); err != nil || string(got) != want {
			t.Errorf("round %d: Get = %q, %v; want %q", round, got, err, want)
		}
	}
}

func fileCreateHelper(t *testing.T, arg string) {
	var root, key string
	var id int
	var start int64
	parts := strings.Split(arg, "|")
	root, key = parts[0], parts[1]
	if _, err := fmt.Sscan(parts[2], &id); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(parts[3], &start); err != nil {
		t.Fatal(err)
	}
	s := newFileStore(t, root)
	time.Sleep(time.Until(time.Unix(0, start)))
	switch err := s.Create(t.Context(), key, fmt.Appendf(nil, "process %d", id)); {
	case err == nil:
		fmt.Println("RESULT created")
	case errors.Is(err, remote.ErrExists):
		fmt.Println("RESULT exists")
	default:
		t.Fatalf("Create: %v", err)
	}
}
