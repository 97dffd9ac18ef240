package commitlog

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Options configure a Log. DB, Dir, PositionKey and HeadVersion are
// required; the zero value of every other field means its default.
type Options struct {
	// DB is the Pebble instance the log writes ahead of. It runs with its
	// own write-ahead log disabled.
	DB *pebble.DB
	// Dir is the directory of the log file, FileName.
	Dir string
	// PositionKey is the Pebble key of the position record. The log owns
	// it: every logged batch sets it.
	PositionKey []byte
	// HeadVersion returns the version of volume's head as Pebble has it,
	// 0 if Pebble has none. Open calls it while it replays, for each entry
	// of a volume other than 0, before it applies the entry.
	HeadVersion func(volume uint64) (uint64, error)
	// Logger receives the log's rare operational messages (default:
	// slog.Default()).
	Logger *slog.Logger

	// Size is the size of the log file (default DefaultSize, at most 1
	// GiB). A larger file, written with a larger Size, is used whole.
	Size int
	// FillChunk is how much of a new log file is written with zeros before
	// Open returns, and how much the filler writes at a time after
	// (default 1 MiB). The filler keeps fillLead chunks ahead of the
	// log's end, no further: a process that writes little writes little.
	FillChunk int
	// FillHook, if set, runs before the filler writes each chunk, and an
	// error it returns stops the filler as a failed write would. (For
	// tests: a slow or failing disk.)
	FillHook func() error

	// ApplyBytes is how many bytes of batches logged by WriteDeferred
	// wait before the applier is woken to apply them (default 256 KiB);
	// ApplyDelay how long the first of them waits at most (default 10
	// ms); MaxQueued how many bytes may wait at all before a
	// WriteDeferred applies them itself (default 16 MiB).
	ApplyBytes int
	ApplyDelay time.Duration
	MaxQueued  int
}

// maxSize bounds the log file's size.
const maxSize = 1 << 30

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.DB == nil:
		return o, fmt.Errorf("%w: no Pebble instance", ErrOptions)
	case o.Dir == "":
		return o, fmt.Errorf("%w: no directory", ErrOptions)
	case len(o.PositionKey) == 0:
		return o, fmt.Errorf("%w: no position key", ErrOptions)
	case o.HeadVersion == nil:
		return o, fmt.Errorf("%w: no HeadVersion", ErrOptions)
	case o.Size < 0 || o.Size > 0 && o.Size <= entriesStart || o.Size > maxSize:
		return o, fmt.Errorf("%w: Size %d, not in %d..%d", ErrOptions, o.Size, entriesStart+1, maxSize)
	case o.FillChunk < 0:
		return o, fmt.Errorf("%w: FillChunk %d", ErrOptions, o.FillChunk)
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.FillChunk == 0 {
		o.FillChunk = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ApplyBytes <= 0 {
		o.ApplyBytes = 256 << 10
	}
	if o.ApplyDelay <= 0 {
		o.ApplyDelay = 10 * time.Millisecond
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = 16 << 20
	}
	return o, nil
}

// Entry is what the header of a logged batch says of it: the volume whose
// head the batch moves, from Parent to Version. Volume 0: the batch moves
// no head, and is always replayed.
type Entry struct {
	Volume, Version, Parent uint64
}

// Log is an open commit log. Its methods are safe for concurrent use.
type Log struct {
	opts Options
	path string
	f    *os.File
	m    []byte // the file, mapped, or (where it cannot be mapped) a copy in memory
	// mapped says whether m is the mapping; if not, every change to m is
	// also written to f.
	mapped bool
	// waiting, if set, is called (with mu held) each time a write starts
	// to wait for the filler. (For tests.)
	waiting func()

	// mu serialises appends: an entry is written and its batch applied
	// under it, so that the log's order is Pebble's.
	mu struct {
		sync.Mutex
		epoch uint64
		seq   uint64 // of the newest entry of this epoch
		off   int    // where the next entry goes
		err   error  // a failed write: the log is unusable
		// flushing is set once this epoch's log is three quarters full
		// and a Pebble flush has been started in the background, so that
		// the flush the log waits for when it is full has less to do.
		flushing bool
		// filled is how much of the file is written (the file's size, up
		// to the log's): a store through the mapping past the end of the
		// file would fault, so an entry that would end past filled waits
		// for the filler (see fill). fillErr is why the filler stopped
		// short, if it did.
		filled  int
		fillErr error
		// need is the end of the entry a write waits for the filler to
		// reach, 0 if none waits: the filler goes at least that far.
		need int
		// wrote is set by the first Write, which wakes the filler: a
		// process that only reads leaves the file as it found it.
		wrote bool
	}
	// extended is signalled (with mu) when the filler has written more of
	// the file, or stopped.
	extended sync.Cond
	fillStop chan struct{} // closed to stop the filler
	// fillKick wakes a filler that is far enough ahead of the log's end
	// (see fill) when writes catch up with it.
	fillKick chan struct{}
	fillDone chan struct{} // closed when the filler has returned; nil if none ran

	// The batches logged and not yet applied to Pebble, oldest first (see
	// WriteDeferred). applyMu is held by whoever applies them (the
	// applier, a Drain, a Write), so that they are applied one at a time
	// and in the log's order; a batch leaves the queue only once applied,
	// so an empty queue means that Pebble has every logged batch. Lock
	// order: mu, then applyMu, then queue.
	applyMu sync.Mutex
	queue   struct {
		sync.Mutex
		batches []*pebble.Batch
		bytes   int
		// err is the first failed application: Pebble and the log
		// disagree until the next Open replays the log, so nothing more
		// is applied, and every later write and drain fails.
		err error
	}
	queued     atomic.Int64 // len(queue.batches), read without the lock
	applyKick  chan struct{}
	applyTimer *time.Timer
	applyStop  chan struct{} // closed to stop the applier
	applyDone  chan struct{} // closed when the applier has returned
}

// Open opens (creating it if needed) the commit log in opts.Dir, replays
// into Pebble the entries Pebble lost, and starts a new epoch. An error
// that wraps ErrCorrupt means the position record or an entry is damaged.
func Open(opts Options) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(opts.Dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open commit log: %w", err)
	}
	l := &Log{opts: opts, path: path, f: f, fillStop: make(chan struct{}), fillKick: make(chan struct{}, 1)}
	l.extended.L = &l.mu
	fail := func(err error) (*Log, error) {
		if l.mapped {
			syscall.Munmap(l.m)
		}
		f.Close()
		return nil, fmt.Errorf("commit log %s: %w", path, err)
	}
	// A log file larger than opts.Size (written with a larger size) is
	// used whole: its entries may reach past opts.Size.
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	size := max(opts.Size, int(min(fi.Size(), maxSize)))
	// A new log file is written with zeros one chunk at a time, the
	// first now and the rest by the filler, in the background.
	filled, err := fillFile(f, int64(min(size, entriesStart+opts.FillChunk)))
	if err != nil {
		return fail(err)
	}
	l.mu.filled = int(min(filled, int64(size)))
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|0)
	if err == nil {
		l.mapped = true
	} else {
		// A file system that cannot map files: keep the log in memory
		// and write each change to the file as well.
		opts.Logger.Warn("cambium: cannot map the commit log; every commit will make a system call",
			"path", path, "err", err)
		if m, err = os.ReadFile(path); err != nil {
			return fail(err)
		}
		if len(m) < size {
			m = append(m, make([]byte, size-len(m))...)
		}
		// Every change is written with pwrite, which extends the file
		// as needed: nothing to fill.
		l.mu.filled = size
	}
	l.m = m
	epoch, gap, err := l.replay()
	if err != nil {
		return fail(fmt.Errorf("replay: %w", err))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.startLocked(epoch + 1); err != nil {
		return fail(err)
	}
	if gap {
		// The entries left in the log belong to a history that did not
		// survive; the new epoch must be on disk before anything could
		// make them look applicable again.
		if err := l.syncLocked(); err != nil {
			return fail(err)
		}
	}
	if l.mapped {
		l.fillDone = make(chan struct{})
		go l.fill()
	}
	l.applyKick = make(chan struct{}, 1)
	l.applyStop = make(chan struct{})
	l.applyDone = make(chan struct{})
	l.applyTimer = time.AfterFunc(time.Hour, l.kickApplier)
	l.applyTimer.Stop()
	go l.applier()
	return l, nil
}

// fillFile makes f at least size bytes long, writing zeros where it is
// shorter, and returns its size. Written, not just allocated (fallocate)
// or left sparse: the first store to a page of such a file costs a slow
// fault, several per commit.
func fillFile(f *os.File, size int64) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() >= size {
		return fi.Size(), nil
	}
	zeros := make([]byte, min(size-fi.Size(), 1<<20))
	for off := fi.Size(); off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return 0, err
		}
		off += n
	}
	return size, nil
}

// fillLead is how many chunks the filler keeps written, and mapped for
// writing, ahead of the log's end.
const fillLead = 8

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault pages of a
// mapping in, writable, without writing them.
const madvPopulateWrite = 23

// fill keeps fillLead chunks past the log's end ready for its entries,
// a chunk at a time, so that appending is a memory copy that does not
// wait and does not fault:
//
//   - written: a new log file is written with zeros past its end. Writing
//     64 MiB takes long enough (some 70 to 150 ms here) that Open should
//     not wait for it, and a process that commits a few megabytes should
//     not pay for the rest (the next Open goes on where this one stopped).
//     Only the filler writes past the end of the file, and entries are
//     only written below it, so the two never touch the same bytes.
//   - mapped for writing (madvPopulateWrite): the first store to each page
//     of a fresh mapping of the file faults, one 4 KiB page at a time,
//     and the commit that makes it pays; the filler takes those faults in
//     advance, on its own thread.
//
// It runs while the log is open and mapped, from its first write (a
// process that only reads writes nothing and maps nothing ahead), waiting
// for writes to come closer (fillKick) when it is far enough ahead.
func (l *Log) fill() {
	defer close(l.fillDone)
	chunk := l.opts.FillChunk
	zeros := make([]byte, chunk)
	stopped := func() {
		// A write waiting for the rest of the file would wait for
		// ever: the log is closing.
		l.mu.Lock()
		l.mu.fillErr = ErrClosed
		l.extended.Broadcast()
		l.mu.Unlock()
	}
	// Nothing until the first write: opening a data directory to read
	// should cost no writing and no faults ahead of a log end that does
	// not move.
	select {
	case <-l.fillStop:
		stopped()
		return
	case <-l.fillKick:
	}
	page := os.Getpagesize()
	populate, populated := l.mapped, -1 // the next byte to map for writing
	for {
		l.mu.Lock()
		from, off := l.mu.filled, l.mu.off
		want := min(max(off+fillLead*chunk, l.mu.need), len(l.m))
		l.mu.Unlock()
		if populated < off || populated > want {
			// Started, or the log started over, or its end overtook
			// the filler: map from the end.
			populated = off / page * page
		}
		toPopulate := populate && populated < min(from, want)
		if from >= want && !toPopulate {
			// Far enough ahead: wait for writes to catch up.
			select {
			case <-l.fillStop:
				stopped()
				return
			case <-l.fillKick:
			}
			continue
		}
		select {
		case <-l.fillStop:
			stopped()
			return
		default:
		}
		if toPopulate {
			end := min(populated+chunk, from, want)
			if err := l.populate(populated, end); errors.Is(err, syscall.EINVAL) {
				populate = false // a kernel before 5.14
			}
			populated = end
		}
		if from >= want {
			continue
		}
		n := min(len(zeros), len(l.m)-from)
		var err error
		if l.opts.FillHook != nil {
			err = l.opts.FillHook()
		}
		if err == nil {
			_, err = l.f.WriteAt(zeros[:n], int64(from))
		}
		l.mu.Lock()
		if err == nil {
			l.mu.filled = from + n
		} else {
			l.mu.fillErr = fmt.Errorf("extend the commit log to %d bytes: %w", from+n, err)
		}
		l.extended.Broadcast()
		l.mu.Unlock()
		if err != nil {
			l.opts.Logger.Warn("cambium: the commit log cannot grow; it will start over within what it has, with a Pebble flush each time", "dir", l.opts.Dir, "bytes", from, "err", err)
			return
		}
	}
}

// populate maps l.m[from:to] for writing. It is only an optimisation: an
// error leaves the pages to fault when written, as without it.
func (l *Log) populate(from, to int) error {
	return syscall.Madvise(l.m[from:to], madvPopulateWrite)
}

// replay applies the entries Pebble lacks and returns the newest epoch
// seen, and whether it stopped before the end of the log because an
// entry's parent was gone.
func (l *Log) replay() (epoch uint64, gap bool, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(&err)
	pos, err := l.position()
	if err != nil {
		return 0, false, err
	}
	logEpoch, ok := decodeHeader(l.m[:headerLen])
	if !ok {
		// Never written whole: a new log, or one whose first header
		// was torn, before any entry could be written.
		return pos.epoch, false, nil
	}
	if logEpoch < pos.epoch {
		return pos.epoch, false, nil // Pebble has everything, and more
	}
	db := l.opts.DB
	applied := 0
	off, want := entriesStart, uint64(1)
	for {
		ent, body, ok := l.entryAt(off, logEpoch, want)
		if !ok {
			break
		}
		off += entryHeadLen + len(body)
		want++
		if ent.epoch == pos.epoch && ent.seq <= pos.seq {
			continue // Pebble has it
		}
		if ent.Volume != 0 {
			head, err := l.opts.HeadVersion(ent.Volume)
			if err != nil {
				return 0, false, err
			}
			if head != ent.Parent {
				l.opts.Logger.Warn("cambium: commits lost in a crash of the machine were not restored",
					"dir", l.opts.Dir, "volume_id", ent.Volume, "version", ent.Version, "head", head)
				gap = true
				break
			}
		}
		b := db.NewBatch()
		if err := b.SetRepr(bytes.Clone(body)); err != nil {
			b.Close()
			return 0, false, fmt.Errorf("%w: entry %d of epoch %d: %v", ErrCorrupt, ent.seq, ent.epoch, err)
		}
		err = b.Commit(pebble.NoSync)
		b.Close()
		if err != nil {
			return 0, false, err
		}
		applied++
	}
	if applied > 0 {
		// The log is about to be reused: put what it restored on disk.
		if err := db.Flush(); err != nil {
			return 0, false, err
		}
		l.opts.Logger.Info("cambium: restored commits a crash of the process left only in the commit log",
			"dir", l.opts.Dir, "commits", applied)
	}
	return max(logEpoch, pos.epoch), gap, nil
}

// entryAt returns the entry at off if it is whole, of epoch and numbered
// seq; ok is false at the end of the log. body aliases the mapping.
func (l *Log) entryAt(off int, epoch, seq uint64) (ent entryHeader, body []byte, ok bool) {
	if off >= l.mu.filled {
		return entryHeader{}, nil, false
	}
	return decodeEntry(l.m[off:l.mu.filled], epoch, seq)
}

// position reads the position record: the entry of the newest logged
// batch Pebble has, (0, 0) if none.
func (l *Log) position() (position, error) {
	raw, closer, err := l.opts.DB.Get(l.opts.PositionKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return position{}, nil
	}
	if err != nil {
		return position{}, err
	}
	pos, err := decodePosition(raw)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	return pos, err
}

// startLocked begins epoch: its header is written, its entries start at
// the beginning.
func (l *Log) startLocked(epoch uint64) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(&err)
	copy(l.m, encodeHeader(epoch))
	if !l.mapped {
		if _, err := l.f.WriteAt(l.m[:headerLen], 0); err != nil {
			return err
		}
	}
	l.mu.epoch, l.mu.seq, l.mu.off, l.mu.flushing = epoch, 0, entriesStart, false
	return nil
}

// syncLocked puts the log file on stable storage: fdatasync(2) writes the
// pages stored through the mapping as well.
func (l *Log) syncLocked() error {
	return syscall.Fdatasync(int(l.f.Fd()))
}

// Write logs batch b and applies it to Pebble. ent gives the volume whose
// head the batch moves, from ent.Parent to ent.Version (volume 0: none).
// With sync, the log is on stable storage before the batch is applied. A
// batch too large for the log is applied and flushed instead. An error
// leaves the store in an unknown state; after a failed write to the log,
// every later Write fails too.
func (l *Log) Write(b *pebble.Batch, ent Entry, sync bool) error {
	return l.write(b, ent, sync, false)
}

// WriteDeferred logs batch b as Write does, with the same durability,
// but leaves applying it to Pebble to the log's applier: it returns once
// the entry is in the log (and, with sync, on stable storage), and b is
// the log's to apply and close. Batches are applied in the log's order,
// in the background once ApplyBytes of them wait or the oldest has waited
// ApplyDelay, or by Drain, or by the next Write or WriteFlushed (which
// apply everything logged before them first). Until then Pebble does not
// have b: a reader that must see it calls Drain first. A failure to apply
// is returned by the next write or Drain, and every one after.
func (l *Log) WriteDeferred(b *pebble.Batch, ent Entry, sync bool) error {
	return l.write(b, ent, sync, true)
}

func (l *Log) write(b *pebble.Batch, ent Entry, sync, deferred bool) (err error) {
	queued := false
	if deferred {
		// The log owns b from here: queued, Drain closes it once applied.
		defer func() {
			if !queued {
				b.Close()
			}
		}()
	}
	size := entryHeadLen + len(b.Repr()) + positionExtra
	if size > min(maxEntry, len(l.m)-entriesStart) {
		return l.WriteFlushed(b)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.wrote {
		l.mu.wrote = true
		l.kickFillerLocked()
	}
	for {
		if l.mu.err != nil {
			return l.mu.err
		}
		if err := l.applyErr(); err != nil {
			return err
		}
		end := len(l.m)
		if l.mu.fillErr != nil && l.mu.fillErr != ErrClosed {
			// The file could not grow (a full disk): the log is as
			// long as the file, and starts over more often.
			end = l.mu.filled
			if entriesStart+size > end {
				return l.writeFlushedLocked(b)
			}
		}
		if l.mu.off+size > end {
			// Full: once Pebble's tables hold every batch logged so
			// far, start over.
			if err := l.Drain(); err != nil {
				return err
			}
			if err := l.opts.DB.Flush(); err != nil {
				l.mu.err = fmt.Errorf("flush before reusing the commit log: %w", err)
				return l.mu.err
			}
			if err := l.startLocked(l.mu.epoch + 1); err != nil {
				l.mu.err = err
				return err
			}
			continue
		}
		if l.mu.off+size <= l.mu.filled {
			break
		}
		// The file does not reach this far yet (see fill). While this
		// waits, other writes may append: everything is checked again.
		if l.mu.fillErr == ErrClosed {
			return fmt.Errorf("write commit log: %w", ErrClosed)
		}
		if l.waiting != nil {
			l.waiting()
		}
		l.mu.need = max(l.mu.need, l.mu.off+size)
		l.kickFillerLocked()
		l.extended.Wait()
	}
	l.mu.need = 0
	seq := l.mu.seq + 1
	if err := b.Set(l.opts.PositionKey, encodePosition(position{epoch: l.mu.epoch, seq: seq}), nil); err != nil {
		return err
	}
	n, err := l.appendLocked(b.Repr(), entryHeader{epoch: l.mu.epoch, seq: seq, Entry: ent})
	if err == nil && sync {
		err = l.syncLocked()
	}
	if err != nil {
		l.mu.err = fmt.Errorf("write commit log: %w", err)
		return l.mu.err
	}
	l.mu.seq = seq
	l.mu.off += n
	if (l.mu.off-n)/l.opts.FillChunk != l.mu.off/l.opts.FillChunk {
		// Into the next chunk: the filler keeps fillLead ahead.
		l.kickFillerLocked()
	}
	if deferred {
		queued = true
		if l.enqueue(b) > l.opts.MaxQueued {
			// Too much waits: apply it now, on this writer's time.
			if err := l.Drain(); err != nil {
				return err
			}
		}
	} else if err := l.applyInOrder(b); err != nil {
		// Applied before Write returns, after every batch logged before
		// it.
		return err
	}
	if !l.mu.flushing && l.mu.off > len(l.m)/4*3 {
		l.mu.flushing = true
		// Only to shorten the flush a full log waits for: the batch is
		// logged and applied, so a failure here is no failure of it.
		if _, err := l.opts.DB.AsyncFlush(); err != nil {
			l.opts.Logger.Warn("cambium: starting a background flush failed; the log will flush when full", "dir", l.opts.Dir, "err", err)
		}
	}
	return nil
}

// kickFillerLocked wakes the filler if it waits for the log's end to
// come closer.
func (l *Log) kickFillerLocked() {
	select {
	case l.fillKick <- struct{}{}:
	default:
	}
}

// WriteFlushed applies b and flushes Pebble's memtables, which puts b and
// everything applied before it in sorted tables on stable storage. The
// log's lock keeps any later entry from being written before that: b
// needs no entry, and may be larger than the log.
func (l *Log) WriteFlushed(b *pebble.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writeFlushedLocked(b)
}

func (l *Log) writeFlushedLocked(b *pebble.Batch) error {
	if err := l.Drain(); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return l.opts.DB.Flush()
}

// appendLocked writes the entry of body at the log's end and returns its
// size. The header goes last, so that its CRC covers a body in place.
func (l *Log) appendLocked(body []byte, ent entryHeader) (n int, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(&err)
	at := l.mu.off
	copy(l.m[at+entryHeadLen:], body)
	putEntryHeader(l.m[at:at+entryHeadLen], ent, body)
	n = entryHeadLen + len(body)
	if !l.mapped {
		if _, err := l.f.WriteAt(l.m[at:at+n], int64(at)); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// recoverFault turns a fault touching the mapping (SIGBUS: the file system
// could not back a page, or the file was cut short) into an error rather
// than a crash of the process. A function that touches the mapping defers
// it, after making faults panics with debug.SetPanicOnFault.
func recoverFault(err *error) {
	if r := recover(); r != nil {
		if _, ok := r.(interface{ Addr() uintptr }); ok {
			*err = fmt.Errorf("commit log: %v", r)
			return
		}
		panic(r)
	}
}

// Epoch returns the log's epoch: it grows by one at every Open and each
// time the log starts over. (For tests and diagnostics.)
func (l *Log) Epoch() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.epoch
}

// Close stops the filler and closes the log. pebbleClosed says Pebble
// closed cleanly, its memtables flushed: then the log starts a new, empty
// epoch, so that the next Open has nothing to read.
func (l *Log) Close(pebbleClosed bool) error {
	close(l.applyStop)
	<-l.applyDone
	l.applyTimer.Stop()
	if l.queued.Load() != 0 {
		// Pebble was closed with logged batches it never had: the next
		// Open replays them, so the log must not start a new epoch.
		pebbleClosed = false
	}
	if l.fillDone != nil {
		close(l.fillStop)
		<-l.fillDone
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if pebbleClosed && l.mu.err == nil {
		l.startLocked(l.mu.epoch + 1)
	}
	var err error
	if l.mapped {
		err = syscall.Munmap(l.m)
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// enqueue adds b, logged, to the batches waiting to be applied and
// returns how many bytes wait. It wakes the applier when enough wait, and
// starts the clock of the oldest.
func (l *Log) enqueue(b *pebble.Batch) int {
	l.queue.Lock()
	defer l.queue.Unlock()
	if len(l.queue.batches) == 0 {
		l.applyTimer.Reset(l.opts.ApplyDelay)
	}
	l.queue.batches = append(l.queue.batches, b)
	l.queue.bytes += len(b.Repr())
	l.queued.Store(int64(len(l.queue.batches)))
	if l.queue.bytes >= l.opts.ApplyBytes {
		l.kickApplier()
	}
	return l.queue.bytes
}

// Pending reports whether batches logged by WriteDeferred wait to be
// applied: a reader that must see them calls Drain.
func (l *Log) Pending() bool { return l.queued.Load() != 0 }

// Drain applies to Pebble, in order, every batch logged so far and not
// yet applied, and returns once Pebble has them all, or the error of the
// first that failed (then, and after, nothing more is applied).
func (l *Log) Drain() error {
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	return l.drainLocked()
}

// applyInOrder applies b, logged, after every batch logged before it.
// The caller holds mu, so that none is logged meanwhile.
func (l *Log) applyInOrder(b *pebble.Batch) error {
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	if err := l.drainLocked(); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		l.queue.Lock()
		defer l.queue.Unlock()
		l.queue.err = fmt.Errorf("apply a logged batch: %w", err)
		return l.queue.err
	}
	return nil
}

func (l *Log) drainLocked() error {
	for {
		l.queue.Lock()
		if l.queue.err != nil || len(l.queue.batches) == 0 {
			err := l.queue.err
			l.queue.Unlock()
			return err
		}
		b := l.queue.batches[0]
		l.queue.Unlock()
		// Deferred or not, the log's order is Pebble's: only the holder of
		// applyMu applies, the oldest first.
		err := b.Commit(pebble.NoSync)
		l.queue.Lock()
		l.queue.batches[0] = nil
		l.queue.batches = l.queue.batches[1:]
		if len(l.queue.batches) == 0 {
			l.queue.batches = l.queue.batches[:0:0]
			l.applyTimer.Stop()
		}
		l.queue.bytes -= len(b.Repr())
		l.queued.Store(int64(len(l.queue.batches)))
		if err != nil {
			// Logged but not applied: Pebble and the log disagree until
			// the next Open replays the entry.
			l.queue.err = fmt.Errorf("apply a logged batch: %w", err)
		}
		l.queue.Unlock()
		b.Close()
	}
}

// applyErr returns the failure of an earlier application, if any.
func (l *Log) applyErr() error {
	l.queue.Lock()
	defer l.queue.Unlock()
	return l.queue.err
}

// kickApplier wakes the applier if it sleeps.
func (l *Log) kickApplier() {
	select {
	case l.applyKick <- struct{}{}:
	default:
	}
}

// applier applies deferred batches when kicked, until the log closes.
func (l *Log) applier() {
	defer close(l.applyDone)
	for {
		select {
		case <-l.applyStop:
			return
		case <-l.applyKick:
			if err := l.Drain(); err != nil {
				l.opts.Logger.Error("cambium: applying a logged commit failed; the next open replays the log", "dir", l.opts.Dir, "err", err)
			}
		}
	}
}
