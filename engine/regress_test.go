package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// A page that spilled and was then written back to its base image must
// commit as the base image; SQLite's ROLLBACK of a large transaction does
// exactly this. (Restored pages that spilled again still commit, with the
// base's bytes: finding them would mean reading every spilled page back.)
func TestTxn_SpillThenRestore(t *testing.T) {
	e := openTestEngine(t, t.TempDir(), Options{SpillBytes: 4096})
	defer e.Close()
	page := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	for _, restoreAll := range []bool{false, true} {
		t.Run(fmt.Sprintf("restoreAll=%v", restoreAll), func(t *testing.T) {
			v, _ := e.Volume(fmt.Sprintf("r%v", restoreAll))
			base := v.Snapshot()
			txn, _ := v.Begin(base)
			for p := PageNo(1); p <= 5; p++ {
				txn.WritePage(p, page(1))
			}
			s1, err := txn.Commit(Durable)
			if err != nil {
				t.Fatal(err)
			}
			base.Release()
			s1.Release()
			s := v.Snapshot()
			defer s.Release()
			txn, _ = v.Begin(s)
			for p := PageNo(1); p <= 4; p++ {
				txn.WritePage(p, page(0xEE))
			}
			if txn.spilled.IsEmpty() {
				t.Fatal("nothing spilled")
			}
			txn.WritePage(1, page(1))
			if restoreAll {
				for p := PageNo(2); p <= 4; p++ {
					txn.WritePage(p, page(1))
				}
			}
			next, err := txn.Commit(Durable)
			if err != nil {
				t.Fatal(err)
			}
			defer next.Release()
			for p := PageNo(1); p <= 4; p++ {
				want := byte(0xEE)
				if p == 1 || restoreAll {
					want = 1
				}
				if got, _ := next.ReadPage(p, nil); got[0] != want {
					t.Fatalf("page %d: %#x, want %#x", p, got[0], want)
				}
			}
		})
	}
}

// A Buffered commit survives the process being killed the moment Commit
// returns (synchronous=NORMAL's promise).
func TestTxn_BufferedSurvivesKill(t *testing.T) {
	if os.Getenv("CAMBIUM_KILL_CHILD") != "" {
		return
	}
	for i := range 20 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestTxn_BufferedKillChild$")
		cmd.Env = append(os.Environ(), "CAMBIUM_KILL_CHILD="+dir)
		out, _ := cmd.CombinedOutput()
		if !bytes.Contains(out, []byte("ack")) {
			t.Fatalf("trial %d: child said %s", i, out)
		}
		e := openTestEngine(t, dir, Options{})
		v, _ := e.Volume("k")
		ver, _, _ := v.Head()
		e.Close()
		if ver != 2 {
			t.Fatalf("trial %d: version 2 was acknowledged, found %d after SIGKILL", i, ver)
		}
	}
}

// TestTxn_BufferedKillChild runs in a child of TestTxn_BufferedSurvivesKill.
func TestTxn_BufferedKillChild(t *testing.T) {
	dir := os.Getenv("CAMBIUM_KILL_CHILD")
	if dir == "" {
		return
	}
	e := openTestEngine(t, dir, Options{})
	v, _ := e.Volume("k")
	for _, d := range []Durability{Durable, Buffered} {
		base := v.Snapshot()
		txn, _ := v.Begin(base)
		txn.WritePage(1, bytes.Repeat([]byte{byte(base.Version())}, 4096))
		if _, err := txn.Commit(d); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintln(os.Stderr, "ack")
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// The page size is fixed once the volume is stored, even when it is
// truncated to no pages.
func TestTxn_PageSizeFixed(t *testing.T) {
	e := openTestEngine(t, t.TempDir(), Options{})
	defer e.Close()
	v, _ := e.Volume("ps")
	base := v.Snapshot()
	txn, _ := v.Begin(base)
	txn.WritePage(1, make([]byte, 512))
	s, _ := txn.Commit(Buffered)
	base.Release()
	txn, _ = v.Begin(s)
	txn.Truncate(0)
	s2, _ := txn.Commit(Buffered)
	s.Release()
	defer s2.Release()
	txn, _ = v.Begin(s2)
	defer txn.Rollback()
	if err := txn.WritePage(1, make([]byte, 1024)); !errors.Is(err, ErrPageSize) {
		t.Fatalf("got %v, want ErrPageSize", err)
	}
}
