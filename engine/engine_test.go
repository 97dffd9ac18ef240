package engine

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestOpen_DirLocked(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{})
	defer e.Close()
	t.Run("SameProcess", func(t *testing.T) {
		_, err := Open(Options{Dir: dir})
		if !errors.Is(err, ErrDirLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "this process") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("OtherProcess", func(t *testing.T) {
		if os.Getenv("CAMBIUM_LOCK_CHILD") != "" {
			return
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestOpen_DirLockedChild$", "-test.v")
		cmd.Env = append(os.Environ(), "CAMBIUM_LOCK_CHILD="+dir)
		out, _ := cmd.CombinedOutput()
		if !bytes.Contains(out, []byte("engine: data directory in use by another process: "+dir+" is held by process")) {
			t.Fatalf("child said:\n%s", out)
		}
	})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openTestEngine(t, dir, Options{}) // released on Close
	e2.Close()
}

// TestOpen_DirLockedChild runs in a child process of TestOpen_DirLocked.
func TestOpen_DirLockedChild(t *testing.T) {
	dir := os.Getenv("CAMBIUM_LOCK_CHILD")
	if dir == "" {
		return
	}
	_, err := Open(Options{Dir: dir, Exclusive: true})
	t.Log(err)
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "a.db", "tenant/42/users.db", "..a", "a..", "名前.db", strings.Repeat("x", MaxNameLen)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "..", "a/../b", "./a", "a/.", "a\x00b", "a\nb", "a\\b", "\xff", strings.Repeat("x", MaxNameLen+1)} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: got %v", bad, err)
		}
	}
}

func TestRecords_ErrCorrupt(t *testing.T) {
	head := headRecord{version: 7, pageCount: 3, pageSize: 4096}.encode()
	for i := range head {
		bad := bytes.Clone(head)
		bad[i] ^= 0x40
		if _, err := decodeHeadRecord("head", bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d: got %v", i, err)
		}
	}
	if _, err := decodeHeadRecord("head", head[:5]); !errors.Is(err, ErrCorrupt) {
		t.Fatal("truncated record accepted")
	}
	if h, err := decodeHeadRecord("head", head); err != nil || h.version != 7 || h.pageCount != 3 {
		t.Fatalf("%+v %v", h, err)
	}
}

// A transaction that spilled to disk and never committed (the process
// died) leaves nothing behind after the next Open.
func TestTxn_SpillCrash(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{SpillBytes: 4096 * 2})
	v, _ := e.Volume("spill")
	page := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }

	base := v.Snapshot()
	txn, _ := v.Begin(base)
	txn.WritePage(1, page(1))
	snap, err := txn.Commit(Durable)
	if err != nil {
		t.Fatal(err)
	}
	base.Release()
	txn, _ = v.Begin(snap)
	for p := PageNo(1); p <= 10; p++ {
		if err := txn.WritePage(p, page(byte(p+100))); err != nil {
			t.Fatal(err)
		}
	}
	if txn.spilled.IsEmpty() {
		t.Fatal("nothing spilled")
	}
	// "Crash": stop the engine's goroutines and drop the store under the
	// open transaction, without any of Close's tidying.
	e.mu.Lock()
	e.mu.closed = true
	e.mu.Unlock()
	close(e.pruneKick)
	<-e.pruneDone
	e.db.Close()
	e.lock.Close()

	e = openTestEngine(t, dir, Options{})
	defer e.Close()
	v, _ = e.Volume("spill")
	s := v.Snapshot()
	defer s.Release()
	if s.Version() != 1 || s.PageCount() != 1 {
		t.Fatalf("version %d with %d pages, want 1 and 1", s.Version(), s.PageCount())
	}
	if got, _ := s.ReadPage(1, nil); !bytes.Equal(got, page(1)) {
		t.Fatal("page 1 changed")
	}
	n := 0
	it, _ := e.newIter(nil)
	for it.First(); it.Valid(); it.Next() {
		if _, _, ver, ok := decodePageKey(it.Key()); ok && ver == 2 {
			n++
		}
		if it.Key()[0] == tagSpill {
			t.Fatal("spill record survived")
		}
	}
	it.Close()
	if n != 0 {
		t.Fatalf("%d spilled pages survived the restart", n)
	}
}

// TestPrune_DeletesGarbage: superseded images go once no snapshot needs
// them, and stay while one does.
func TestPrune_DeletesGarbage(t *testing.T) {
	e := openTestEngine(t, t.TempDir(), Options{})
	defer e.Close()
	v, _ := e.Volume("garbage")
	commit := func(b byte) {
		base := v.Snapshot()
		txn, _ := v.Begin(base)
		txn.WritePage(1, bytes.Repeat([]byte{b}, 512))
		s, err := txn.Commit(Buffered)
		if err != nil {
			t.Fatal(err)
		}
		s.Release()
		base.Release()
	}
	images := func() int {
		it, _ := e.newIter(nil)
		defer it.Close()
		n := 0
		for it.First(); it.Valid(); it.Next() {
			if _, p, _, ok := decodePageKey(it.Key()); ok && p == 1 {
				n++
			}
		}
		return n
	}
	commit(0)
	old := v.Snapshot() // pins version 1
	for i := range 300 {
		commit(byte(i + 1))
	}
	for range 3 {
		if _, err := v.pruneStep(); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := old.ReadPage(1, nil); got[0] != 0 {
		t.Fatal("the pinned snapshot lost its page")
	}
	kept := images()
	old.Release()
	for range 3 {
		if _, err := v.pruneStep(); err != nil {
			t.Fatal(err)
		}
	}
	// The pruner waits for pruneMinCommits prunable commits, so at most
	// that many superseded images remain.
	if n := images(); n > pruneMinCommits || kept < 301 {
		t.Fatalf("%d images of page 1 while pinned, %d after release; want all 301 kept, then at most %d", kept, n, pruneMinCommits)
	}
}
