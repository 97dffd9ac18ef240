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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
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
	commitLogSize = 1 << 20
	e := openTestEngine(t, dir, Options{})
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
// images above it go, and the commit log position goes back to pos.
func rewind(t *testing.T, e *Engine, v *Volume, ver Version, pos commitLogPosition) {
	t.Helper()
	id := VolumeID(v.id.Load())
	head, _, _ := v.Head()
	b := e.db.NewBatch()
	for u := ver + 1; u <= head; u++ {
		b.Delete(commitKey(id, u), nil)
		b.Delete(pageKey(id, 1, u), nil)
	}
	b.Set(headKey(id), headRecord{version: ver, pageCount: 1, pageSize: 4096}.encode(), nil)
	b.Set(commitLogKey, encodeCommitLogPosition(pos), nil)
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
			e := openTestEngine(t, dir, Options{})
			v, _ := e.Volume("r")
			base := v.Snapshot()
			txn, _ := v.Begin(base)
			txn.WritePage(1, bytes.Repeat([]byte{1}, 4096))
			s, err := txn.Commit(Durable) // version 1: entry 1, synced
			if err != nil {
				t.Fatal(err)
			}
			s.Release()
			base.Release()
			for b := byte(2); b <= 4; b++ {
				commitBuffered(t, v, b) // versions 2..4: entries 2..4
			}
			epoch := e.clog.mu.epoch
			e.clog.mu.Lock() // the mapping past the file's end must not be read
			saved := bytes.Clone(e.clog.m[:e.clog.mu.filled])
			e.clog.mu.Unlock()
			rewind(t, e, v, tc.pebbleAt, commitLogPosition{epoch: epoch, seq: tc.posSeq})
			e.Close()
			if err := os.WriteFile(filepath.Join(dir, commitLogName), saved, 0o644); err != nil {
				t.Fatal(err)
			}

			rec := &warnRecorder{}
			e = openTestEngine(t, dir, Options{Logger: slog.New(rec)})
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
			if e.clog.mu.epoch <= epoch {
				t.Fatalf("epoch %d after reopening, the log had %d", e.clog.mu.epoch, epoch)
			}
			e.Close()

			// Once more: whatever the log held is settled.
			e = openTestEngine(t, dir, Options{Logger: slog.New(rec)})
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
	e := openTestEngine(t, dir, Options{})
	defer e.Close()
	v, _ := e.Volume("f")
	commitBuffered(t, v, 1)
	waitClosed(t, e.clog.fillDone) // else it would write the file out again
	if err := os.Truncate(filepath.Join(dir, commitLogName), 0); err != nil {
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

// A new log file is written out by a goroutine after Open: commits that
// catch up with it wait for it (a store past the file's end would fault),
// and all of them are there after a reopen, which finishes the file.
func TestCommitLog_WriterAheadOfFiller(t *testing.T) {
	smallLog(t, 4<<20, 64<<10)
	var chunks atomic.Int64
	commitLogFillHook = func() error {
		chunks.Add(1)
		time.Sleep(2 * time.Millisecond) // a slow disk: 60 chunks take 120 ms
		return nil
	}
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{})
	v, _ := e.Volume("filler")
	const commits = 300 // 1.2 MB of pages, well ahead of the filler
	for i := 1; i <= commits; i++ {
		commitBuffered(t, v, byte(i))
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if chunks.Load() == 0 {
		t.Fatal("the filler never ran")
	}
	reopenFilled(t, dir, "filler", commits, byte(commits%256))
}

// Writers of several volumes at once, all ahead of a slow filler: each
// write waits until the file reaches the end of its own entry, wherever the
// others left the log's end while it waited.
func TestCommitLog_WritersAheadOfFiller(t *testing.T) {
	smallLog(t, 8<<20, 64<<10)
	commitLogFillHook = func() error { time.Sleep(5 * time.Millisecond); return nil }
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{})
	const writers, commits = 4, 150
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			v, err := e.Volume(fmt.Sprintf("w%d", w))
			for i := 1; i <= commits && err == nil; i++ {
				err = tryCommit(v, byte(i))
			}
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	e = openTestEngine(t, dir, Options{})
	defer e.Close()
	for w := range writers {
		v, _ := e.Volume(fmt.Sprintf("w%d", w))
		if ver, _, _ := v.Head(); ver != commits {
			t.Fatalf("volume w%d at version %d after reopening, want %d", w, ver, commits)
		}
	}
}

// A write waiting for the filler when the log closes fails rather than
// waiting for ever.
func TestCommitLog_ErrClosedWhileWaiting(t *testing.T) {
	smallLog(t, 4<<20, 64<<10)
	release := make(chan struct{})
	commitLogFillHook = func() error { <-release; return nil } // stuck until told
	defer close(release)
	e := openTestEngine(t, t.TempDir(), Options{})
	v, _ := e.Volume("stuck")
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 1; err == nil; i++ { // the first 64 KiB fill up, then one waits
			err = tryCommit(v, byte(i))
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("a commit past the filled part of the log returned: %v", err)
	default:
	}
	close(e.clog.fillStop) // as close does, without closing Pebble under the writer
	release <- struct{}{}  // the chunk the filler was writing
	select {
	case err := <-done:
		if !errors.Is(err, errCommitLogClosed) {
			t.Fatalf("the waiting commit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting commit still waits after the log closed")
	}
	waitClosed(t, e.clog.fillDone)
	e.clog.fillDone = nil // stopped already
	e.Close()
}

// A log file that cannot grow (a full disk) is a shorter log: commits go
// on, the log starting over within what the file has, and all of them are
// there after a reopen, which grows the file again.
func TestCommitLog_FillerFails(t *testing.T) {
	smallLog(t, 4<<20, 64<<10)
	var failures atomic.Int64
	commitLogFillHook = func() error { failures.Add(1); return syscall.ENOSPC }
	dir := t.TempDir()
	var logs bytes.Buffer
	e := openTestEngine(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	v, _ := e.Volume("full")
	const commits = 100 // 400 KB: the 68 KiB the file has starts over several times
	for i := 1; i <= commits; i++ {
		if err := tryCommit(v, byte(i)); err != nil {
			t.Fatalf("commit %d into a log that cannot grow: %v", i, err)
		}
	}
	// A transaction too large for what the file has is applied and flushed.
	base := v.Snapshot()
	txn, _ := v.Begin(base)
	for p := PageNo(2); p <= 40; p++ {
		txn.WritePage(p, bytes.Repeat([]byte{byte(p)}, 4096))
	}
	s, err := txn.Commit(Buffered)
	if err != nil {
		t.Fatalf("a 160 KB commit into a 68 KiB log: %v", err)
	}
	s.Release()
	base.Release()
	if failures.Load() == 0 || !strings.Contains(logs.String(), "cannot grow") {
		t.Fatalf("the filler failed %d times; the engine said %s", failures.Load(), logs.String())
	}
	e.clog.mu.Lock()
	epoch := e.clog.mu.epoch
	e.clog.mu.Unlock()
	if epoch < 3 {
		t.Fatalf("epoch %d: the log never started over", epoch)
	}
	e.Close()
	reopenFilled(t, dir, "full", commits+1, byte(commits))
}

// smallLog makes the commit logs the test opens size bytes, filled chunk
// bytes at a time, until the test ends.
func smallLog(t *testing.T, size, chunk int) {
	oldSize, oldChunk := commitLogSize, commitLogFillChunk
	t.Cleanup(func() { commitLogSize, commitLogFillChunk, commitLogFillHook = oldSize, oldChunk, nil })
	commitLogSize, commitLogFillChunk = size, chunk
}

// reopenFilled reopens dir with a filler that works and checks that volume
// name is at version ver with page 1 written by commit page1, and that the
// log file then grows to its full size.
func reopenFilled(t *testing.T, dir, name string, ver Version, page1 byte) {
	t.Helper()
	commitLogFillHook = nil
	e := openTestEngine(t, dir, Options{})
	defer e.Close()
	v, _ := e.Volume(name)
	s := v.Snapshot()
	defer s.Release()
	if got, _ := s.ReadPage(1, nil); s.Version() != ver || got[0] != page1 {
		t.Fatalf("version %d, page 1 of commit %d after reopening; want %d and %d", s.Version(), got[0], ver, page1)
	}
	waitClosed(t, e.clog.fillDone)
	if fi, err := os.Stat(filepath.Join(dir, commitLogName)); err != nil || fi.Size() != int64(commitLogSize) {
		t.Fatalf("log file after reopening: %v, %v; want %d bytes", fi, err, commitLogSize)
	}
}

// waitClosed waits for ch (a filler's fillDone, nil if none ran) to be
// closed.
func waitClosed(t *testing.T, ch chan struct{}) {
	t.Helper()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the filler did not finish")
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
