package engine

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cambiumdb/cambium/engine/internal/commitlog"
)

// clogPage is page p's image at version ver in TestCommitLog_ReplayAfterKill.
func clogPage(p PageNo, ver Version) []byte {
	return bytes.Repeat([]byte{byte(p), byte(ver), byte(ver >> 8)}, 4096/3+1)[:4096]
}

// clogPages are the pages version ver writes: page 1 and one of 2..9.
func clogPages(ver Version) []PageNo {
	return []PageNo{1, PageNo(ver%8) + 2}
}

// Buffered commits survive SIGKILL the moment the last one returns, however
// many the commit log holds and however often it started over; the ones
// Pebble had not written yet are replayed from the log by the next Open.
func TestCommitLog_ReplayAfterKill(t *testing.T) {
	if os.Getenv("CAMBIUM_CLOG_CHILD") != "" {
		return
	}
	const commits = 600 // ~5 MB of pages: the child's 1 MiB log starts over several times
	const trials = 4
	for trial := range trials {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestCommitLog_KillChild$")
		cmd.Env = append(os.Environ(), "CAMBIUM_CLOG_CHILD="+dir, "CAMBIUM_CLOG_COMMITS="+strconv.Itoa(commits))
		out, _ := cmd.CombinedOutput()
		if !bytes.Contains(out, []byte("ack")) {
			t.Fatalf("trial %d: child said %s", trial, out)
		}
		var logs bytes.Buffer
		e := openTestEngine(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		v, _ := e.Volume("k")
		s := v.Snapshot()
		if s.Version() != commits {
			t.Fatalf("trial %d: version %d after SIGKILL, %d were acknowledged", trial, s.Version(), commits)
		}
		want := map[PageNo]Version{}
		for ver := Version(1); ver <= commits; ver++ {
			for _, p := range clogPages(ver) {
				want[p] = ver
			}
		}
		for p, ver := range want {
			if got, _ := s.ReadPage(p, nil); !bytes.Equal(got, clogPage(p, ver)) {
				t.Fatalf("trial %d: page %d is not version %d's", trial, p, ver)
			}
		}
		s.Release()
		// Commits go on on top of the replayed ones.
		commitBuffered(t, v, 0xAA)
		e.Close()
		// Pebble has no log of its own: the commits since the log last
		// started over were only in its memtable and in the log.
		if !strings.Contains(logs.String(), "restored commits") {
			t.Fatalf("trial %d: nothing was replayed from the commit log; the engine said %s", trial, logs.String())
		}
	}
}

// TestCommitLog_KillChild runs in a child of TestCommitLog_ReplayAfterKill.
func TestCommitLog_KillChild(t *testing.T) {
	dir := os.Getenv("CAMBIUM_CLOG_CHILD")
	if dir == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv("CAMBIUM_CLOG_COMMITS"))
	var opts Options
	opts.testingKnobs.commitLogSize = 1 << 20
	e := openTestEngine(t, dir, opts)
	v, _ := e.Volume("k")
	for i := 1; i <= n; i++ {
		base := v.Snapshot()
		txn, err := v.Begin(base)
		if err != nil {
			t.Fatal(err)
		}
		ver := base.Version() + 1
		for _, p := range clogPages(ver) {
			txn.WritePage(p, clogPage(p, ver))
		}
		snap, err := txn.Commit(Buffered)
		if err != nil {
			t.Fatal(err)
		}
		snap.Release()
		base.Release()
	}
	fmt.Fprintln(os.Stderr, "ack")
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// commitBuffered commits page 1 of v filled with b, through the commit log.
func commitBuffered(t *testing.T, v *Volume, b byte) {
	t.Helper()
	if err := tryCommit(v, b); err != nil {
		t.Fatal(err)
	}
}

// rewind makes the store look as it would after a crash that lost
// versions after ver of volume v: the head, the commit records and the page
// images above it go, and the commit log position record goes back to pos
// (a value it had).
func rewind(t *testing.T, e *Engine, v *Volume, ver Version, pos []byte) {
	t.Helper()
	id := VolumeID(v.id.Load())
	head, _, _ := v.Head()
	if err := e.settle(); err != nil {
		t.Fatal(err)
	}
	b := e.db.NewBatch()
	for u := ver + 1; u <= head; u++ {
		b.Delete(commitKey(id, u), nil)
		b.Delete(pageKey(id, 1, u), nil)
	}
	b.Set(headKey(id), headRecord{version: ver, pageCount: 1, pageSize: 4096}.encode(), nil)
	b.Set(commitLogKey, pos, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
}

// After a power loss the file system may keep commit log entries whose
// parents Pebble lost: replay applies the entries that follow what Pebble
// has, stops at the first whose parent is gone, and never applies it or
// anything after it later either.
func TestCommitLog_Replay(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pebbleAt Version // the head the "crash" leaves in Pebble
		posSeq   uint64  // the newest entry Pebble has (entry k is version k)
		want     Version
		gap      bool
	}{
		{"OK", 1, 1, 4, false},           // entries 2..4 replayed
		{"Applied", 4, 4, 4, false},      // nothing to replay
		{"Partly", 2, 2, 4, false},       // entries 3, 4 replayed
		{"ErrParentGone", 1, 2, 1, true}, // entry 3 (version 3) needs version 2, lost
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// A log Open writes out whole: no filler grows the file
			// while the test copies it.
			var opts Options
			opts.testingKnobs.commitLogSize = 1 << 20
			e := openTestEngine(t, dir, opts)
			v, _ := e.Volume("r")
			positions := map[uint64][]byte{} // the position record once entry k is applied
			position := func(k uint64) {
				raw, _, err := e.get(commitLogKey)
				if err != nil {
					t.Fatal(err)
				}
				positions[k] = raw
			}
			base := v.Snapshot()
			txn, _ := v.Begin(base)
			txn.WritePage(1, bytes.Repeat([]byte{1}, 4096))
			s, err := txn.Commit(Durable) // version 1: entry 1, synced
			if err != nil {
				t.Fatal(err)
			}
			s.Release()
			base.Release()
			position(1)
			for b := byte(2); b <= 4; b++ {
				commitBuffered(t, v, b) // versions 2..4: entries 2..4
				position(uint64(b))
			}
			epoch := e.clog.Epoch()
			// The mapping is the file's page cache: reading the file
			// reads what the log wrote.
			saved, err := os.ReadFile(filepath.Join(dir, commitlog.FileName))
			if err != nil {
				t.Fatal(err)
			}
			rewind(t, e, v, tc.pebbleAt, positions[tc.posSeq])
			e.Close()
			if err := os.WriteFile(filepath.Join(dir, commitlog.FileName), saved, 0o644); err != nil {
				t.Fatal(err)
			}

			rec := &warnRecorder{}
			opts.Logger = slog.New(rec)
			e = openTestEngine(t, dir, opts)
			v, _ = e.Volume("r")
			s = v.Snapshot()
			if s.Version() != tc.want {
				t.Fatalf("version %d after replay, want %d", s.Version(), tc.want)
			}
			if got, _ := s.ReadPage(1, nil); got[0] != byte(tc.want) {
				t.Fatalf("page 1 is version %d's, want %d's", got[0], tc.want)
			}
			s.Release()
			if warned := len(rec.take()) > 0; warned != tc.gap {
				t.Fatalf("warned %v, want %v", warned, tc.gap)
			}
			if got := e.clog.Epoch(); got <= epoch {
				t.Fatalf("epoch %d after reopening, the log had %d", got, epoch)
			}
			e.Close()

			// Once more: whatever the log held is settled.
			e = openTestEngine(t, dir, opts)
			v, _ = e.Volume("r")
			if ver, _, _ := v.Head(); ver != tc.want {
				t.Fatalf("version %d after a second reopen, want %d", ver, tc.want)
			}
			e.Close()
		})
	}
}

// A fault writing through the mapping (here, the file was cut short under
// it) is an error of the commit, which stops the engine's writes, never a
// crash of the process.
func TestCommitLog_ErrFault(t *testing.T) {
	dir := t.TempDir()
	// A log Open writes out whole: no filler runs, which would write the
	// file out again after it is cut.
	var opts Options
	opts.testingKnobs.commitLogSize = 1 << 20
	e := openTestEngine(t, dir, opts)
	defer e.Close()
	v, _ := e.Volume("f")
	commitBuffered(t, v, 1)
	if err := os.Truncate(filepath.Join(dir, commitlog.FileName), 0); err != nil {
		t.Fatal(err)
	}
	base := v.Snapshot()
	defer base.Release()
	txn, _ := v.Begin(base)
	txn.WritePage(1, bytes.Repeat([]byte{2}, 4096))
	if _, err := txn.Commit(Buffered); err == nil || !strings.Contains(err.Error(), "commit log") {
		t.Fatalf("commit after the log was cut short: %v", err)
	}
	txn.Rollback()
	if err := e.writable(); err == nil {
		t.Fatal("the engine still takes writes")
	}
	if _, err := v.Begin(base); err == nil || errors.Is(err, ErrBusy) {
		t.Fatalf("begin after a failed commit: %v", err)
	}
}

// A damaged commit log position record fails Open with ErrCorrupt, as
// any damaged record does.
func TestCommitLog_ErrCorrupt(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{})
	if err := e.db.Set(commitLogKey, []byte("not a position"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e, err := Open(Options{Dir: dir}); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			e.Close()
		}
		t.Fatalf("open with a damaged position record: %v", err)
	}
}

// tryCommit commits page 1 of v filled with b, Buffered, and returns the
// error of Begin or Commit (rolling back after a failed commit).
func tryCommit(v *Volume, b byte) error {
	base := v.Snapshot()
	defer base.Release()
	txn, err := v.Begin(base)
	if err != nil {
		return err
	}
	txn.WritePage(1, bytes.Repeat([]byte{b}, 4096))
	s, err := txn.Commit(Buffered)
	if err != nil {
		txn.Rollback()
		return err
	}
	s.Release()
	return nil
}

// A commit leaves its batch to the commit log to apply; every reader of
// Pebble sees it all the same: snapshots without a page cache, old and
// new, the commit history, and the next Open.
func TestTxn_CommitDeferred(t *testing.T) {
	dir := t.TempDir()
	opts := Options{CacheBytes: -1}
	opts.testingKnobs.applyBytes, opts.testingKnobs.applyDelay = 1<<30, time.Hour // never in the background
	e := openTestEngine(t, dir, opts)
	v, _ := e.Volume("deferred")
	var old *Snapshot
	for ver := Version(1); ver <= 5; ver++ {
		if ver == 4 {
			old = v.Snapshot()
		}
		base := v.Snapshot()
		txn, err := v.Begin(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range clogPages(ver) {
			txn.WritePage(p, clogPage(p, ver))
		}
		s, err := txn.Commit(Buffered)
		if err != nil {
			t.Fatal(err)
		}
		s.Release()
		base.Release()
	}
	if !e.clog.Pending() {
		t.Fatal("every commit was applied before it returned")
	}
	check := func(s *Snapshot) {
		t.Helper()
		want := map[PageNo]Version{}
		for ver := Version(1); ver <= s.Version(); ver++ {
			for _, p := range clogPages(ver) {
				want[p] = ver
			}
		}
		for p, ver := range want {
			if got, err := s.ReadPage(p, nil); err != nil || !bytes.Equal(got, clogPage(p, ver)) {
				t.Fatalf("version %d, page %d: %v, not the image of version %d", s.Version(), p, err, ver)
			}
		}
	}
	check(old)
	old.Release()
	head := v.Snapshot()
	check(head)
	head.Release()
	if log, err := v.Log(); err != nil || len(log) != 5 {
		t.Fatalf("history: %d commits, %v; want 5", len(log), err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTestEngine(t, dir, opts)
	defer e.Close()
	v, _ = e.Volume("deferred")
	head = v.Snapshot()
	defer head.Release()
	if head.Version() != 5 {
		t.Fatalf("version %d after a reopen, want 5", head.Version())
	}
	check(head)
}
