package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// commitLog is the store's write-ahead log. Pebble runs with its own
// write-ahead log disabled, so its durable state is what it has flushed to
// sorted tables; every write that must survive a crash goes through this
// log first.
//
// The log is a file in the data directory mapped into memory (MAP_SHARED).
// The mapping's pages are the operating system's page cache, which
// outlives the process: once a batch is copied there it survives a kill,
// with no system call at all. A write then applies the batch to Pebble's
// memtable. That is a Buffered commit: the cost of a memory copy. A
// Durable commit (and any write whose loss after a power failure would
// break a promise, such as a push's claim) also syncs the log file before
// it is applied: one fdatasync, which covers every entry before it too.
//
// Every logged batch also sets the commit log position record (key
// commitLogKey): the epoch and sequence number of its own entry. Pebble's
// durable state after a crash is a prefix of the batches it was given
// (a flush writes a memtable whole), so that record says exactly which
// entries it has; Open replays the later ones, in order, then flushes.
// An entry that moves a volume's head (a commit, a pull, a reset) is
// replayed only if the volume's head is still the entry's parent. That
// check matters only after a power loss, when the log may have lost a
// tail that Pebble's flushed tables do not have: a commit whose parent is
// gone is not replayed, and nothing after it either.
//
// The log starts over when it is full: a Pebble flush puts every batch
// applied so far in sorted tables, after which no entry is needed, and
// the next entry is written at the start under a new epoch. Entries are
// found by walking from the start while each one is whole, of the
// header's epoch and next in sequence, so the bytes of older epochs left
// further on are never read as entries.
//
// Writes that need no log (a page fetched from the remote, a prune step,
// the pages a large transaction spills before it commits) are applied
// directly: lost in a crash, they are fetched again, pruned again, or
// belong to a transaction that never committed. A batch too large for the
// log is applied and then flushed.
//
// Layout (integers big-endian, CRC-32C), in a file of commitLogSize bytes,
// written with zeros in full (its first chunk before Open returns, the
// rest by a goroutine soon after) so that no store through the mapping
// needs a block the file system might not have:
//
//	offset 0     header: magic "CAMBCLOG" (8) | format = 2 (1) | epoch (8) | crc of the preceding (4)
//	offset 4096  entries, back to back, each:
//	             body length (4) | epoch (8) | sequence (8, from 1 in each epoch) | volume ID (8)
//	             | version (8) | parent version (8) | crc of the preceding and the body (4)
//	             | body: the Pebble batch (Batch.Repr)
//
// An entry of volume ID 0 moves no head and is always replayed.
//
// Where the file cannot be mapped, the log is kept in memory and each
// entry is also written to the file with pwrite(2): slower, as safe.
type commitLog struct {
	e *Engine
	f *os.File
	m []byte // the file, mapped, or (where it cannot be mapped) a copy in memory
	// mapped says whether m is the mapping; if not, every change to m is
	// also written to f.
	mapped bool

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
	}
	// extended is signalled (with mu) when the filler has written more of
	// the file, or stopped.
	extended sync.Cond
	fillStop chan struct{} // closed to stop the filler
	fillDone chan struct{} // closed when the filler has returned; nil if none ran
}

const (
	commitLogName          = "commits.log"
	commitLogMagic         = "CAMBCLOG"
	commitLogFormat        = 2 // format 1 (Pebble had a log of its own) is read too
	commitLogHeaderLen     = 8 + 1 + 8 + 4
	commitLogStart         = 4096
	commitLogEntryHeadLen  = 4 + 8 + 8 + 8 + 8 + 8 + 4
	commitLogMaxEntry      = 4 << 20
	commitLogPositionLen   = 1 + 8 + 8 + 4
	commitLogPositionExtra = 64 // what setting the position record adds to a batch, at most
)

// commitLogSize is the size of the log file. The log starts over, with a
// Pebble flush, each time it fills; as large as a memtable, it rarely
// needs to before Pebble flushes on its own. (A variable, so that tests can
// make the log start over often.)
var commitLogSize = 64 << 20

// commitLogFillChunk is how much of a new log file is written with zeros
// before Open returns, and how much the filler writes at a time after.
// (A variable, so that tests can make the filler slow to catch up.)
var commitLogFillChunk = 1 << 20

// errCommitLogClosed fails a write that waited for the filler while the
// log closed.
var errCommitLogClosed = errors.New("the commit log is closed")

// commitLogFillHook, if set, runs before the filler writes each chunk, and
// an error it returns stops the filler as a failed write would. (For tests:
// a slow or failing disk.)
var commitLogFillHook func() error

// logEntry is an entry's header.
type logEntry struct {
	epoch, seq      uint64
	volume          VolumeID
	version, parent Version
}

// openCommitLog opens (creating it if needed) the data directory's commit
// log, replays into Pebble the commits Pebble lost, and starts a new epoch.
func openCommitLog(e *Engine) (*commitLog, error) {
	path := filepath.Join(e.dir, commitLogName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open commit log: %w", err)
	}
	l := &commitLog{e: e, f: f, fillStop: make(chan struct{})}
	l.extended.L = &l.mu
	fail := func(err error) (*commitLog, error) {
		if l.mapped {
			syscall.Munmap(l.m)
		}
		f.Close()
		return nil, fmt.Errorf("commit log %s: %w", path, err)
	}
	// A new log file is written with zeros one chunk at a time, the
	// first now and the rest by the filler, in the background.
	filled, err := fillFile(f, int64(min(commitLogSize, commitLogStart+commitLogFillChunk)))
	if err != nil {
		return fail(err)
	}
	l.mu.filled = int(min(filled, int64(commitLogSize)))
	m, err := syscall.Mmap(int(f.Fd()), 0, commitLogSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|0)
	if err == nil {
		l.mapped = true
	} else {
		// A file system that cannot map files: keep the log in memory
		// and write each change to the file as well.
		e.opts.Logger.Warn("cambium: cannot map the commit log; every commit will make a system call",
			"path", path, "err", err)
		if m, err = os.ReadFile(path); err != nil {
			return fail(err)
		}
		if len(m) < commitLogSize {
			m = append(m, make([]byte, commitLogSize-len(m))...)
		}
		// Every change is written with pwrite, which extends the file
		// as needed: nothing to fill.
		l.mu.filled = commitLogSize
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
	if l.mu.filled < len(l.m) {
		l.fillDone = make(chan struct{})
		go l.fill()
	}
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

// fill writes the rest of a new log file with zeros, a chunk at a time,
// past its end: writing 64 MiB takes long enough (some 70 to 150 ms here)
// that Open should not wait for it, and commits rarely catch up with it.
// Only the filler writes past the end of the file, and entries are only
// written below it, so the two never touch the same bytes.
func (l *commitLog) fill() {
	defer close(l.fillDone)
	zeros := make([]byte, commitLogFillChunk)
	for {
		l.mu.Lock()
		from := l.mu.filled
		l.mu.Unlock()
		if from >= len(l.m) {
			return
		}
		select {
		case <-l.fillStop:
			// A write waiting for the rest of the file would wait
			// for ever: the log is closing.
			l.mu.Lock()
			l.mu.fillErr = errCommitLogClosed
			l.extended.Broadcast()
			l.mu.Unlock()
			return
		default:
		}
		n := min(len(zeros), len(l.m)-from)
		var err error
		if commitLogFillHook != nil {
			err = commitLogFillHook()
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
			l.e.opts.Logger.Warn("cambium: the commit log cannot grow; it will start over within what it has, with a Pebble flush each time", "dir", l.e.dir, "bytes", from, "err", err)
			return
		}
	}
}

// replay applies the entries Pebble lacks and returns the newest epoch
// seen, and whether it stopped before the end of the log because an
// entry's parent was gone.
func (l *commitLog) replay() (epoch uint64, gap bool, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(&err)
	pos, err := l.position()
	if err != nil {
		return 0, false, err
	}
	logEpoch, ok := decodeCommitLogHeader(l.m[:commitLogHeaderLen])
	if !ok {
		// Never written whole: a new log, or one whose first header
		// was torn, before any entry could be written.
		return pos.epoch, false, nil
	}
	if logEpoch < pos.epoch {
		return pos.epoch, false, nil // Pebble has everything, and more
	}
	applied := 0
	off, want := commitLogStart, uint64(1)
	for {
		ent, body, ok := l.entryAt(off, logEpoch, want)
		if !ok {
			break
		}
		off += commitLogEntryHeadLen + len(body)
		want++
		if ent.epoch == pos.epoch && ent.seq <= pos.seq {
			continue // Pebble has it
		}
		head, err := l.headVersion(ent.volume)
		if err != nil {
			return 0, false, err
		}
		if ent.volume != 0 && head != ent.parent {
			l.e.opts.Logger.Warn("cambium: commits lost in a crash of the machine were not restored",
				"dir", l.e.dir, "volume_id", ent.volume, "version", ent.version, "head", head)
			gap = true
			break
		}
		b := l.e.db.NewBatch()
		if err := b.SetRepr(bytes.Clone(body)); err != nil {
			b.Close()
			return 0, false, fmt.Errorf("%w: commit log entry %d of epoch %d: %v", ErrCorrupt, ent.seq, ent.epoch, err)
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
		if err := l.e.db.Flush(); err != nil {
			return 0, false, err
		}
		l.e.opts.Logger.Info("cambium: restored commits a crash of the process left only in the commit log",
			"dir", l.e.dir, "commits", applied)
	}
	return max(logEpoch, pos.epoch), gap, nil
}

// entryAt returns the entry at off if it is whole, of epoch and numbered
// seq; ok is false at the end of the log. body aliases the mapping.
func (l *commitLog) entryAt(off int, epoch, seq uint64) (ent logEntry, body []byte, ok bool) {
	if off >= l.mu.filled {
		return logEntry{}, nil, false
	}
	return decodeLogEntry(l.m[off:l.mu.filled], epoch, seq)
}

// decodeLogEntry decodes the entry at the start of b if it is whole, of
// epoch and numbered seq; ok is false otherwise (the end of the log, or a
// torn entry). body aliases b.
func decodeLogEntry(b []byte, epoch, seq uint64) (ent logEntry, body []byte, ok bool) {
	if len(b) < commitLogEntryHeadLen {
		return logEntry{}, nil, false
	}
	head := b[:commitLogEntryHeadLen]
	n := int(binary.BigEndian.Uint32(head[0:4]))
	ent = logEntry{
		epoch:   binary.BigEndian.Uint64(head[4:12]),
		seq:     binary.BigEndian.Uint64(head[12:20]),
		volume:  VolumeID(binary.BigEndian.Uint64(head[20:28])),
		version: Version(binary.BigEndian.Uint64(head[28:36])),
		parent:  Version(binary.BigEndian.Uint64(head[36:44])),
	}
	if ent.epoch != epoch || ent.seq != seq || n > commitLogMaxEntry || commitLogEntryHeadLen+n > len(b) {
		return logEntry{}, nil, false
	}
	body = b[commitLogEntryHeadLen : commitLogEntryHeadLen+n]
	if binary.BigEndian.Uint32(head[44:48]) != crc32.Update(crc32.Checksum(head[:44], castagnoli), castagnoli, body) {
		return logEntry{}, nil, false // torn: the end of the log
	}
	return ent, body, true
}

// position reads the commit log position record: the entry of the newest
// logged batch Pebble has, (0, 0) if none.
func (l *commitLog) position() (commitLogPosition, error) {
	raw, found, err := l.e.get(commitLogKey)
	if err != nil || !found {
		return commitLogPosition{}, err
	}
	return decodeCommitLogPosition(raw)
}

// headVersion returns the version of volume id's head record, 0 if the
// volume is not stored.
func (l *commitLog) headVersion(id VolumeID) (Version, error) {
	if id == 0 {
		return 0, nil
	}
	raw, found, err := l.e.get(headKey(id))
	if err != nil || !found {
		return 0, err
	}
	h, err := decodeHeadRecord(fmt.Sprintf("head record of volume %d", id), raw)
	return h.version, err
}

// startLocked begins epoch: its header is written, its entries start at
// the beginning.
func (l *commitLog) startLocked(epoch uint64) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(&err)
	copy(l.m, encodeCommitLogHeader(epoch))
	if !l.mapped {
		if _, err := l.f.WriteAt(l.m[:commitLogHeaderLen], 0); err != nil {
			return err
		}
	}
	l.mu.epoch, l.mu.seq, l.mu.off, l.mu.flushing = epoch, 0, commitLogStart, false
	return nil
}

// syncLocked puts the log file on stable storage: fdatasync(2) writes the
// pages stored through the mapping as well.
func (l *commitLog) syncLocked() error {
	return syscall.Fdatasync(int(l.f.Fd()))
}

func encodeCommitLogHeader(epoch uint64) []byte {
	hdr := make([]byte, 0, commitLogHeaderLen)
	hdr = append(hdr, commitLogMagic...)
	hdr = append(hdr, commitLogFormat)
	hdr = binary.BigEndian.AppendUint64(hdr, epoch)
	return sealRecord(hdr)
}

func decodeCommitLogHeader(b []byte) (epoch uint64, ok bool) {
	if len(b) != commitLogHeaderLen || string(b[:8]) != commitLogMagic || (b[8] != commitLogFormat && b[8] != 1) {
		return 0, false
	}
	if binary.BigEndian.Uint32(b[17:]) != crc32.Checksum(b[:17], castagnoli) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[9:17]), true
}

// write logs batch b and applies it to Pebble. ent gives the volume
// whose head the batch moves, from ent.parent to ent.version (volume 0:
// none). With sync, the log is on stable storage before the batch is
// applied. A batch too large for the log is applied and flushed instead.
// An error leaves the store in an unknown state.
func (l *commitLog) write(b *pebble.Batch, ent logEntry, sync bool) error {
	size := commitLogEntryHeadLen + len(b.Repr()) + commitLogPositionExtra
	if size > min(commitLogMaxEntry, len(l.m)-commitLogStart) {
		return l.writeFlushed(b)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.mu.err != nil {
			return l.mu.err
		}
		end := len(l.m)
		if l.mu.fillErr != nil && l.mu.fillErr != errCommitLogClosed {
			// The file could not grow (a full disk): the log is as
			// long as the file, and starts over more often.
			end = l.mu.filled
			if commitLogStart+size > end {
				return l.writeFlushedLocked(b)
			}
		}
		if l.mu.off+size > end {
			// Full: once Pebble's tables hold every batch applied so
			// far, start over.
			if err := l.e.db.Flush(); err != nil {
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
		if l.mu.fillErr == errCommitLogClosed {
			return fmt.Errorf("write commit log: %w", errCommitLogClosed)
		}
		l.extended.Wait()
	}
	seq := l.mu.seq + 1
	if err := b.Set(commitLogKey, encodeCommitLogPosition(commitLogPosition{epoch: l.mu.epoch, seq: seq}), nil); err != nil {
		return err
	}
	ent.epoch, ent.seq = l.mu.epoch, seq
	n, err := l.appendLocked(b.Repr(), ent)
	if err == nil && sync {
		err = l.syncLocked()
	}
	if err != nil {
		l.mu.err = fmt.Errorf("write commit log: %w", err)
		return l.mu.err
	}
	l.mu.seq = seq
	l.mu.off += n
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	if !l.mu.flushing && l.mu.off > len(l.m)/4*3 {
		l.mu.flushing = true
		// Only to shorten the flush a full log waits for: the batch is
		// logged and applied, so a failure here is no failure of it.
		if _, err := l.e.db.AsyncFlush(); err != nil {
			l.e.opts.Logger.Warn("cambium: starting a background flush failed; the log will flush when full", "dir", l.e.dir, "err", err)
		}
	}
	return nil
}

// writeFlushed applies b and flushes Pebble's memtables, which puts b and
// everything applied before it in sorted tables on stable storage. The
// log's lock keeps any later entry from being written before that.
func (l *commitLog) writeFlushed(b *pebble.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writeFlushedLocked(b)
}

func (l *commitLog) writeFlushedLocked(b *pebble.Batch) error {
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return l.e.db.Flush()
}

// appendLocked writes the entry of body at the log's end and returns its
// size. The header goes last, so that its CRC covers a body in place.
func (l *commitLog) appendLocked(body []byte, ent logEntry) (n int, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(&err)
	at := l.mu.off
	copy(l.m[at+commitLogEntryHeadLen:], body)
	putLogEntryHead(l.m[at:at+commitLogEntryHeadLen], ent, body)
	n = commitLogEntryHeadLen + len(body)
	if !l.mapped {
		if _, err := l.f.WriteAt(l.m[at:at+n], int64(at)); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// putLogEntryHead writes into head the header of the entry ent whose body
// is body (see decodeLogEntry).
func putLogEntryHead(head []byte, ent logEntry, body []byte) {
	binary.BigEndian.PutUint32(head[0:4], uint32(len(body)))
	binary.BigEndian.PutUint64(head[4:12], ent.epoch)
	binary.BigEndian.PutUint64(head[12:20], ent.seq)
	binary.BigEndian.PutUint64(head[20:28], uint64(ent.volume))
	binary.BigEndian.PutUint64(head[28:36], uint64(ent.version))
	binary.BigEndian.PutUint64(head[36:44], uint64(ent.parent))
	binary.BigEndian.PutUint32(head[44:48], crc32.Update(crc32.Checksum(head[:44], castagnoli), castagnoli, body))
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

// close closes the log after Pebble closed cleanly (its log is synced):
// it starts a new, empty epoch so that the next Open has nothing to read.
func (l *commitLog) close(pebbleClosed bool) error {
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
