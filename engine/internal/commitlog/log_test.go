package commitlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// testStore is a Pebble instance and its commit log, kept as the engine
// keeps them, with a toy layout: volume vol's head version under headKey,
// its pages under pageKey, each page 4096 copies of one byte.
type testStore struct {
	db  *pebble.DB
	log *Log
}

var testPositionKey = []byte("position")

func headKey(vol uint64) []byte { return binary.BigEndian.AppendUint64([]byte{'h'}, vol) }

func pageKey(vol uint64, p uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64([]byte{'p'}, vol), p)
}

// openDB opens dir's Pebble instance without a log of its own.
func openDB(tb testing.TB, dir string) *pebble.DB {
	tb.Helper()
	db, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{DisableWAL: true})
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// openTestStore opens dir's Pebble instance and its commit log with opts,
// whose DB, Dir, PositionKey and HeadVersion it sets.
func openTestStore(tb testing.TB, dir string, opts Options) *testStore {
	tb.Helper()
	s := &testStore{db: openDB(tb, dir)}
	opts.DB, opts.Dir, opts.PositionKey, opts.HeadVersion = s.db, dir, testPositionKey, s.head
	var err error
	if s.log, err = Open(opts); err != nil {
		s.db.Close()
		tb.Fatal(err)
	}
	return s
}

// close closes the store as the engine's Close does: Pebble's memtables
// are flushed to its tables, then the log starts a new, empty epoch.
func (s *testStore) close() error {
	err := s.db.Flush()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if cerr := s.log.Close(err == nil); err == nil {
		err = cerr
	}
	return err
}

// crash closes the store as a killed process leaves it: Pebble loses what
// it had not flushed, the log keeps every entry.
func (s *testStore) crash() {
	s.db.Close()
	s.log.Close(false)
}

// head returns the version of volume vol, 0 if Pebble has none.
func (s *testStore) head(vol uint64) (uint64, error) {
	raw, closer, err := s.db.Get(headKey(vol))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return binary.BigEndian.Uint64(raw), nil
}

// page returns the byte page p of volume vol is filled with, 0 if Pebble
// has no such page.
func (s *testStore) page(vol uint64, p uint32) byte {
	raw, closer, err := s.db.Get(pageKey(vol, p))
	if err != nil {
		return 0
	}
	defer closer.Close()
	return raw[0]
}

// commit writes pages (each page's number: the byte it is filled with) as
// volume vol's next version, through the log without a sync, as a
// Buffered commit does.
func (s *testStore) commit(vol uint64, pages map[uint32]byte) error {
	head, err := s.head(vol)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for p, fill := range pages {
		if err := b.Set(pageKey(vol, p), bytes.Repeat([]byte{fill}, 4096), nil); err != nil {
			return err
		}
	}
	if err := b.Set(headKey(vol), binary.BigEndian.AppendUint64(nil, head+1), nil); err != nil {
		return err
	}
	return s.log.Write(b, Entry{Volume: vol, Version: head + 1, Parent: head}, false)
}

// tryCommit commits page 1 of volume vol filled with b.
func (s *testStore) tryCommit(vol uint64, b byte) error {
	return s.commit(vol, map[uint32]byte{1: b})
}

// Entries Pebble lost when the process died are replayed by the next Open,
// in order, each while its volume's head is still its parent; an entry
// whose parent is gone is not, nor anything after it, then or later.
func TestOpen_Replay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rewind bool // Pebble loses version 2 of volume 1 too (a power loss), which it had flushed
		want   uint64
	}{
		{"OK", false, 4},
		{"ErrParentGone", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir, Options{})
			for i := 1; i <= 4; i++ {
				if err := s.tryCommit(1, byte(i)); err != nil {
					t.Fatal(err)
				}
				if i == 2 {
					if err := s.db.Flush(); err != nil { // versions 1, 2: in Pebble's tables
						t.Fatal(err)
					}
				}
			}
			b := s.db.NewBatch() // an entry of no volume: replayed, unless one before it was not
			b.Set([]byte("x"), []byte("y"), nil)
			if err := s.log.Write(b, Entry{}, false); err != nil {
				t.Fatal(err)
			}
			b.Close()
			s.crash()
			if tc.rewind {
				db := openDB(t, dir)
				rb := db.NewBatch()
				rb.Set(headKey(1), binary.BigEndian.AppendUint64(nil, 1), nil)
				rb.Set(pageKey(1, 1), bytes.Repeat([]byte{1}, 4096), nil)
				if err := rb.Commit(pebble.NoSync); err != nil {
					t.Fatal(err)
				}
				rb.Close()
				if err := db.Flush(); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}

			var logs bytes.Buffer
			s = openTestStore(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if head, _ := s.head(1); head != tc.want || s.page(1, 1) != byte(tc.want) {
				t.Fatalf("version %d, page 1 of commit %d after replay; want %d", head, s.page(1, 1), tc.want)
			}
			_, closer, err := s.db.Get([]byte("x"))
			if replayed := err == nil; replayed != !tc.rewind {
				t.Fatalf("the entry of no volume replayed: %v, want %v", replayed, !tc.rewind)
			}
			if err == nil {
				closer.Close()
			}
			if gap := strings.Contains(logs.String(), "were not restored"); gap != tc.rewind {
				t.Fatalf("warned of a gap: %v, want %v; the log said %s", gap, tc.rewind, logs.String())
			}
			s.crash()

			// Once more: whatever the log held is settled.
			s = openTestStore(t, dir, Options{})
			defer s.close()
			if head, _ := s.head(1); head != tc.want {
				t.Fatalf("version %d after a second reopen, want %d", head, tc.want)
			}
		})
	}
}

// A damaged position record fails Open with ErrCorrupt.
// A log reopened with a smaller Size than it was written with is still
// replayed whole: entries past the new Size are not lost.
func TestOpen_SmallerSize(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{Size: 1 << 20, FillChunk: 1 << 20})
	const commits = 100 // about 4 KiB each: well past 64 KiB
	for i := 1; i <= commits; i++ {
		if err := s.tryCommit(1, byte(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.crash()
	s = openTestStore(t, dir, Options{Size: 64 << 10})
	defer s.close()
	if head, _ := s.head(1); head != commits {
		t.Fatalf("version %d after replaying with a smaller size, want %d", head, commits)
	}
}

func TestOpen_ErrCorrupt(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	if err := db.Set(testPositionKey, []byte("not a position"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err := Open(Options{DB: db, Dir: dir, PositionKey: testPositionKey, HeadVersion: func(uint64) (uint64, error) { return 0, nil }})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a damaged position record: %v", err)
	}
}

// A new log file is written out by a goroutine after Open: writes that
// catch up with it wait for it (a store past the file's end would fault),
// and all of them are there after a reopen, which finishes the file.
func TestLog_WriterAheadOfFiller(t *testing.T) {
	var chunks atomic.Int64
	opts := Options{Size: 4 << 20, FillChunk: 64 << 10, FillHook: func() error {
		chunks.Add(1)
		time.Sleep(2 * time.Millisecond) // a slow disk: 60 chunks take 120 ms
		return nil
	}}
	dir := t.TempDir()
	s := openTestStore(t, dir, opts)
	const commits = 300 // 1.2 MB of pages, well ahead of the filler
	for i := 1; i <= commits; i++ {
		if err := s.tryCommit(1, byte(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if chunks.Load() == 0 {
		t.Fatal("the filler never ran")
	}
	reopenFilled(t, dir, opts, 1, commits, byte(commits%256))
}

// The filler writes a new log file only fillLead chunks ahead of the log's
// end: a process that commits a little does not write the whole file; the
// next one goes on from there as its commits need.
func TestLog_FillsAheadOnly(t *testing.T) {
	opts := Options{Size: 16 << 20, FillChunk: 64 << 10}
	dir := t.TempDir()
	ahead := int64(entriesStart + (fillLead+1)*opts.FillChunk)
	for round, commits := range []int{10, 400} { // about 40 KB, then 1.6 MB more
		s := openTestStore(t, dir, opts)
		for i := 1; i <= commits; i++ {
			if err := s.tryCommit(1, byte(i)); err != nil {
				t.Fatal(err)
			}
		}
		s.log.mu.Lock()
		end := int64(s.log.mu.off)
		s.log.mu.Unlock()
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, FileName))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < end || fi.Size() > end+ahead {
			t.Fatalf("round %d: the log file is %d bytes with entries up to %d; want at most %d chunks ahead", round, fi.Size(), end, fillLead+1)
		}
	}
	reopenFilled(t, dir, opts, 1, 410, byte(400%256))
}

// Writers of several volumes at once, all ahead of a slow filler: each
// write waits until the file reaches the end of its own entry, wherever the
// others left the log's end while it waited.
func TestLog_WritersAheadOfFiller(t *testing.T) {
	opts := Options{Size: 8 << 20, FillChunk: 64 << 10, FillHook: func() error { time.Sleep(5 * time.Millisecond); return nil }}
	dir := t.TempDir()
	s := openTestStore(t, dir, opts)
	const writers, commits = 4, 150
	errs := make(chan error, writers)
	for w := range uint64(writers) {
		go func() {
			var err error
			for i := 1; i <= commits && err == nil; i++ {
				err = s.tryCommit(w+1, byte(i))
			}
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s.close()
	s = openTestStore(t, dir, Options{Size: opts.Size, FillChunk: opts.FillChunk})
	defer s.close()
	for w := range uint64(writers) {
		if ver, _ := s.head(w + 1); ver != commits {
			t.Fatalf("volume %d at version %d after reopening, want %d", w+1, ver, commits)
		}
	}
}

// A write waiting for the filler when the log closes fails rather than
// waiting for ever.
func TestLog_ErrClosedWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	hooked := make(chan struct{}, 1) // the filler is in its hook, stuck until told
	opts := Options{Size: 4 << 20, FillChunk: 64 << 10, FillHook: func() error {
		select {
		case hooked <- struct{}{}:
		default:
		}
		<-release
		return nil
	}}
	defer close(release)
	s := openTestStore(t, t.TempDir(), opts)
	waiting := make(chan struct{}, 1)
	s.log.waiting = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 1; err == nil; i++ { // the first 64 KiB fill up, then one waits
			err = s.tryCommit(1, byte(i))
		}
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("a write past the filled part of the log returned: %v", err)
	}
	<-hooked // else closing fillStop could stop the filler before its hook, which nothing would then release
	select {
	case err := <-done:
		t.Fatalf("a write past the filled part of the log returned: %v", err)
	default:
	}
	close(s.log.fillStop) // as Close does, without closing Pebble under the writer
	release <- struct{}{} // the chunk the filler was writing
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("the waiting write: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting write still waits after the log closed")
	}
	waitClosed(t, s.log.fillDone)
	s.log.fillDone = nil // stopped already
	s.close()
}

// A log file that cannot grow (a full disk) is a shorter log: writes go
// on, the log starting over within what the file has, and all of them are
// there after a reopen, which grows the file again.
func TestLog_FillerFails(t *testing.T) {
	var failures atomic.Int64
	opts := Options{Size: 4 << 20, FillChunk: 64 << 10, FillHook: func() error { failures.Add(1); return syscall.ENOSPC }}
	dir := t.TempDir()
	var logs bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := openTestStore(t, dir, opts)
	const commits = 100 // 400 KB: the 68 KiB the file has starts over several times
	for i := 1; i <= commits; i++ {
		if err := s.tryCommit(1, byte(i)); err != nil {
			t.Fatalf("commit %d into a log that cannot grow: %v", i, err)
		}
	}
	// A batch too large for what the file has is applied and flushed.
	pages := map[uint32]byte{}
	for p := uint32(2); p <= 40; p++ {
		pages[p] = byte(p)
	}
	if err := s.commit(1, pages); err != nil {
		t.Fatalf("a 160 KB commit into a 68 KiB log: %v", err)
	}
	waitClosed(t, s.log.fillDone) // it logged why it stopped
	if failures.Load() == 0 || !strings.Contains(logs.String(), "cannot grow") {
		t.Fatalf("the filler failed %d times; the log said %s", failures.Load(), logs.String())
	}
	if epoch := s.log.Epoch(); epoch < 3 {
		t.Fatalf("epoch %d: the log never started over", epoch)
	}
	s.close()
	reopenFilled(t, dir, opts, 1, commits+1, byte(commits))
}

// reopenFilled reopens dir with opts but a filler that works and checks
// that volume vol is at version ver with page 1 written by commit page1,
// and that the log file, written again (another volume's commit), then
// grows to fillLead chunks past the log's end (the end of the file, if
// nearer).
func reopenFilled(t *testing.T, dir string, opts Options, vol, ver uint64, page1 byte) {
	t.Helper()
	opts.FillHook = nil
	s := openTestStore(t, dir, opts)
	defer s.close()
	if head, _ := s.head(vol); head != ver || s.page(vol, 1) != page1 {
		t.Fatalf("version %d, page 1 of commit %d after reopening; want %d and %d", head, s.page(vol, 1), ver, page1)
	}
	if err := s.tryCommit(vol+1, 1); err != nil {
		t.Fatal(err)
	}
	waitFilled(t, s.log, min(opts.Size, entriesStart+fillLead*opts.FillChunk))
}

// waitFilled waits for the log's file to be at least size bytes long.
func waitFilled(t *testing.T, l *Log, size int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		fi, err := os.Stat(l.path)
		if err == nil && fi.Size() >= int64(size) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log file: %v, %v; want at least %d bytes", fi, err, size)
		}
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

// Options missing what the log cannot do without are refused.
func TestOpen_ErrOptions(t *testing.T) {
	for _, opts := range []Options{
		{},
		{Dir: t.TempDir(), PositionKey: testPositionKey},
	} {
		if _, err := Open(opts); !errors.Is(err, ErrOptions) {
			t.Fatalf("open with %+v: %v", opts, err)
		}
	}
}

// A process that opens the log and never writes it (a reader) writes
// nothing ahead and maps nothing for writing: the filler waits for the
// first write.
func TestLog_ReaderFillsNothing(t *testing.T) {
	var fills atomic.Int32
	opts := Options{Size: 16 << 20, FillChunk: 64 << 10, FillHook: func() error { fills.Add(1); return nil }}
	dir := t.TempDir()
	s := openTestStore(t, dir, opts)
	// Give a filler that would not wait time to show itself.
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline) && fills.Load() == 0; {
		time.Sleep(time.Millisecond)
	}
	if n := fills.Load(); n != 0 {
		t.Fatalf("the filler wrote %d chunks ahead before any write", n)
	}
	if err := s.tryCommit(1, 1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); fills.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the filler wrote nothing ahead after the first write")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

// commitDeferred logs page 1 of volume vol filled with fill as version
// ver, leaving it to the log to apply (WriteDeferred).
func (s *testStore) commitDeferred(tb testing.TB, vol, ver uint64, fill byte) {
	tb.Helper()
	b := s.db.NewBatch()
	b.Set(pageKey(vol, 1), bytes.Repeat([]byte{fill}, 4096), nil)
	b.Set(headKey(vol), binary.BigEndian.AppendUint64(nil, ver), nil)
	if err := s.log.WriteDeferred(b, Entry{Volume: vol, Version: ver, Parent: ver - 1}, false); err != nil {
		tb.Fatal(err)
	}
}

// Deferred batches reach Pebble only when drained, in the log's order,
// also by a Write after them; the ones a crash caught unapplied are
// replayed by the next Open.
func TestLog_WriteDeferred(t *testing.T) {
	dir := t.TempDir()
	// Nothing applies them in the background.
	s := openTestStore(t, dir, Options{ApplyBytes: 1 << 30, ApplyDelay: time.Hour})
	s.commitDeferred(t, 1, 1, 'a')
	s.commitDeferred(t, 1, 2, 'b')
	if !s.log.Pending() || s.page(1, 1) != 0 {
		t.Fatalf("pending %v, page 1 %q: applied before a drain", s.log.Pending(), s.page(1, 1))
	}
	// A Write applies what was logged before it first, then its own.
	if err := s.commit(2, map[uint32]byte{1: 'x'}); err != nil {
		t.Fatal(err)
	}
	if s.log.Pending() || s.page(1, 1) != 'b' || s.page(2, 1) != 'x' {
		t.Fatalf("after a Write: pending %v, pages %q %q; want b x", s.log.Pending(), s.page(1, 1), s.page(2, 1))
	}
	s.commitDeferred(t, 1, 3, 'c')
	if err := s.log.Drain(); err != nil {
		t.Fatal(err)
	}
	if s.log.Pending() || s.page(1, 1) != 'c' {
		t.Fatalf("after Drain: pending %v, page 1 %q; want c", s.log.Pending(), s.page(1, 1))
	}
	s.commitDeferred(t, 1, 4, 'd')
	s.commitDeferred(t, 1, 5, 'e')
	s.crash()

	s = openTestStore(t, dir, Options{})
	defer s.close()
	if head, _ := s.head(1); head != 5 || s.page(1, 1) != 'e' {
		t.Fatalf("after a crash: version %d, page 1 %q; want 5 and e", head, s.page(1, 1))
	}
}

// The applier applies deferred batches by itself once ApplyBytes of them
// wait, or once the oldest has waited ApplyDelay.
func TestLog_ApplierApplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"ApplyBytes", Options{ApplyBytes: 1, ApplyDelay: time.Hour}},
		{"ApplyDelay", Options{ApplyBytes: 1 << 30, ApplyDelay: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, t.TempDir(), tc.opts)
			defer s.close()
			s.commitDeferred(t, 1, 1, 'a')
			deadline := time.Now().Add(10 * time.Second)
			for s.log.Pending() || s.page(1, 1) != 'a' {
				if time.Now().After(deadline) {
					t.Fatalf("not applied: pending %v, page 1 %q", s.log.Pending(), s.page(1, 1))
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// A WriteDeferred that finds MaxQueued bytes waiting applies them itself.
func TestLog_MaxQueued(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{ApplyBytes: 1 << 30, ApplyDelay: time.Hour, MaxQueued: 3 * 4096})
	defer s.close()
	s.commitDeferred(t, 1, 1, 'a')
	s.commitDeferred(t, 1, 2, 'b')
	if !s.log.Pending() {
		t.Fatal("applied below MaxQueued")
	}
	s.commitDeferred(t, 1, 3, 'c')
	if s.log.Pending() || s.page(1, 1) != 'c' {
		t.Fatalf("over MaxQueued: pending %v, page 1 %q; want c applied", s.log.Pending(), s.page(1, 1))
	}
}
