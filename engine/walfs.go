package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// walFS gives commits two durability classes over one Pebble write-ahead
// log. Commits that must reach the log file before they return are applied
// with pebble.Sync, so Pebble writes their log record (write(2)) before
// the commit returns. Whether that sync also reaches stable storage
// (fsync) depends on whether a Durable commit is waiting: the log file's
// Sync is real only while one is. Because an fsync covers everything
// written before it, a Durable commit also makes every earlier Buffered
// commit durable, as SQLite's own NORMAL mode would.
//
// Buffered commits of write transactions usually skip that wait: they go
// through the commit log (see commitLog) and are applied with
// pebble.NoSync.
//
// Log files are always synced for real before they are closed, so that a
// log Pebble has rotated away from is never left torn on disk; other files
// (tables, the manifest) are never touched.
type walFS struct {
	vfs.FS
	durable *atomic.Int64 // Durable commits waiting for stable storage
}

func (fs walFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs walFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

func (fs walFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || filepath.Ext(name) != ".log" {
		return f, err
	}
	return &walFile{File: f, durable: fs.durable, writeback: true}, nil
}

type walFile struct {
	vfs.File
	durable *atomic.Int64

	// Pebble's log writer, one goroutine, is the only caller of Write.
	written, started int64 // bytes written; bytes whose writeback was started
	writeback        bool  // starting writeback early is cheap here
}

// walWritebackBytes is how much a log file may grow before its writeback
// to disk is started (not waited for). Pebble syncs a log when it rotates
// away from it, from the commit that fills the memtable; without early
// writeback that fsync writes the whole log, tens of megabytes, while the
// commit waits.
const walWritebackBytes = 1 << 20

func (f *walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.written += int64(n)
	if err == nil && f.writeback && f.written-f.started >= walWritebackBytes {
		// On Linux this is sync_file_range(SYNC_FILE_RANGE_WRITE): the
		// kernel starts writing, nothing waits for stable storage. Where
		// it would be a full sync instead, stop.
		full, serr := f.File.SyncTo(f.written)
		if serr != nil {
			return n, serr
		}
		f.started = f.written
		f.writeback = !full
	}
	return n, err
}

func (f *walFile) Sync() error {
	if f.durable.Load() > 0 {
		return f.File.Sync()
	}
	return nil
}

func (f *walFile) SyncData() error {
	if f.durable.Load() > 0 {
		return f.File.SyncData()
	}
	return nil
}

func (f *walFile) SyncTo(length int64) (bool, error) {
	if f.durable.Load() > 0 {
		return f.File.SyncTo(length)
	}
	return false, nil
}

func (f *walFile) Close() error {
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		return err
	}
	return f.File.Close()
}

// commitLog makes Buffered commits survive the death of the process
// without waiting for Pebble's log writer.
//
// Pebble writes its write-ahead log from a goroutine of its own, so a
// commit applied with pebble.Sync hands its record to that goroutine and
// waits to be woken once it is written: two goroutine switches per commit,
// and in the loadable extension, whose calls arrive on SQLite's threads,
// two switches between OS threads, which cost more than the rest of a
// small commit. A commit applied with pebble.NoSync does not wait, but its
// record may sit in Pebble's buffer, in the process, for a while.
//
// So a Buffered commit first copies its batch into the commit log, a file
// in the data directory mapped into memory (MAP_SHARED), and then applies
// the batch with pebble.NoSync. The mapping's pages are the operating
// system's page cache, which outlives the process: once the copy is done
// the commit survives a kill, with no system call at all. Pebble's log
// writer catches up on its own, and Open replays the entries whose batches
// Pebble does not have (the process died first).
//
// Every logged batch also sets the commit log position record (key
// commitLogKey): the epoch and sequence number of its own entry. Pebble
// recovers a prefix of the batches it was given, so that record says
// exactly which entries it has; the later ones are replayed, in order,
// each only if its volume's head is still the commit's parent. That check
// matters only after a power loss, when the file system may keep the
// commit log but lose the tail of Pebble's log (Buffered commits promise
// nothing then): a commit whose parent is gone is not replayed, and
// nothing after it either.
//
// The log starts over when it is full: one synced Pebble write (a
// pebble.Sync LogData) puts every batch applied so far in Pebble's log
// file, after which no entry is needed, and the next entry is written at
// the start under a new epoch. Entries are found by walking from the start
// while each one is whole, of the header's epoch and next in sequence, so
// the bytes of older epochs left further on are never read as entries.
//
// Layout (integers big-endian, CRC-32C), in a file of commitLogSize bytes
// written out in full when created, so that no store through the mapping
// needs a block the file system might not have:
//
//	offset 0     header: magic "CAMBCLOG" (8) | format = 1 (1) | epoch (8) | crc of the preceding (4)
//	offset 4096  entries, back to back, each:
//	             body length (4) | epoch (8) | sequence (8, from 1 in each epoch) | volume ID (8)
//	             | version (8) | parent version (8) | crc of the preceding and the body (4)
//	             | body: the commit's Pebble batch (Batch.Repr)
//
// Commits whose entry would be larger than commitLogMaxEntry, and commits
// of transactions that spilled pages to Pebble before committing (the log
// holds only the batch, not the spilled pages), use pebble.Sync instead.
type commitLog struct {
	e *Engine
	f *os.File
	m []byte // the file, mapped; nil where it cannot be (then commits do not use the log)

	// mu serialises appends: an entry is written and its batch applied
	// under it, so that the log's order is Pebble's.
	mu struct {
		sync.Mutex
		epoch uint64
		seq   uint64 // of the newest entry of this epoch
		off   int    // where the next entry goes
		err   error  // a failed write: the log is unusable
	}
}

const (
	commitLogName          = "commits.log"
	commitLogMagic         = "CAMBCLOG"
	commitLogFormat        = 1
	commitLogHeaderLen     = 8 + 1 + 8 + 4
	commitLogStart         = 4096
	commitLogEntryHeadLen  = 4 + 8 + 8 + 8 + 8 + 8 + 4
	commitLogSize          = 1 << 20
	commitLogMaxEntry      = 256 << 10
	commitLogPositionLen   = 1 + 8 + 8 + 4
	commitLogPositionExtra = 64 // what setting the position record adds to a batch, at most
)

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
	l := &commitLog{e: e, f: f}
	fail := func(err error) (*commitLog, error) {
		if l.m != nil {
			syscall.Munmap(l.m)
		}
		f.Close()
		return nil, fmt.Errorf("commit log %s: %w", path, err)
	}
	if err := fillFile(f, commitLogSize); err != nil {
		return fail(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, commitLogSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		// A file system that cannot map files: replay what the log
		// holds, then commit without it.
		e.opts.Logger.Warn("cambium: cannot map the commit log; Buffered commits will wait for Pebble's log writer",
			"path", path, "err", err)
		if m, err = os.ReadFile(path); err != nil {
			return fail(err)
		}
		if len(m) < commitLogSize {
			m = append(m, make([]byte, commitLogSize-len(m))...)
		}
		epoch, _, err := (&commitLog{e: e, m: m}).replay()
		if err != nil {
			return fail(fmt.Errorf("replay: %w", err))
		}
		// What the log held is in Pebble now, or never will be: retire
		// it for good.
		if _, err := f.WriteAt(encodeCommitLogHeader(epoch+1), 0); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(err)
		}
		f.Close()
		return &commitLog{e: e}, nil
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
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	return l, nil
}

// fillFile makes f size bytes long, writing zeros where it is shorter.
func fillFile(f *os.File, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	zeros := make([]byte, 1<<20)
	for off := fi.Size(); off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
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
		if head != ent.parent {
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
		l.e.durable.Add(1)
		err := l.e.db.LogData(nil, pebble.Sync)
		l.e.durable.Add(-1)
		if err != nil {
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
	if off+commitLogEntryHeadLen > len(l.m) {
		return logEntry{}, nil, false
	}
	head := l.m[off : off+commitLogEntryHeadLen]
	n := int(binary.BigEndian.Uint32(head[0:4]))
	ent = logEntry{
		epoch:   binary.BigEndian.Uint64(head[4:12]),
		seq:     binary.BigEndian.Uint64(head[12:20]),
		volume:  VolumeID(binary.BigEndian.Uint64(head[20:28])),
		version: Version(binary.BigEndian.Uint64(head[28:36])),
		parent:  Version(binary.BigEndian.Uint64(head[36:44])),
	}
	end := off + commitLogEntryHeadLen + n
	if ent.epoch != epoch || ent.seq != seq || n > commitLogMaxEntry || end > len(l.m) {
		return logEntry{}, nil, false
	}
	body = l.m[off+commitLogEntryHeadLen : end]
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
	l.mu.epoch, l.mu.seq, l.mu.off = epoch, 0, commitLogStart
	return nil
}

func encodeCommitLogHeader(epoch uint64) []byte {
	hdr := make([]byte, 0, commitLogHeaderLen)
	hdr = append(hdr, commitLogMagic...)
	hdr = append(hdr, commitLogFormat)
	hdr = binary.BigEndian.AppendUint64(hdr, epoch)
	return sealRecord(hdr)
}

func decodeCommitLogHeader(b []byte) (epoch uint64, ok bool) {
	if len(b) != commitLogHeaderLen || string(b[:8]) != commitLogMagic || b[8] != commitLogFormat {
		return 0, false
	}
	if binary.BigEndian.Uint32(b[17:]) != crc32.Checksum(b[:17], castagnoli) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[9:17]), true
}

// commit logs batch b, the commit of volume id from parent to version, and
// applies it with pebble.NoSync. It returns false, having done nothing,
// for a batch too large to log or when there is no log; the caller then
// applies the batch with pebble.Sync. An error leaves the store in an
// unknown state.
func (l *commitLog) commit(b *pebble.Batch, id VolumeID, version, parent Version) (logged bool, err error) {
	size := commitLogEntryHeadLen + len(b.Repr()) + commitLogPositionExtra
	if size > commitLogMaxEntry || l.m == nil {
		return false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.err != nil {
		return true, l.mu.err
	}
	if l.mu.off+size > len(l.m) {
		// Full: once Pebble's own log has every batch applied so far,
		// start over.
		if err := l.e.db.LogData(nil, pebble.Sync); err != nil {
			l.mu.err = fmt.Errorf("sync before reusing the commit log: %w", err)
			return true, l.mu.err
		}
		if err := l.startLocked(l.mu.epoch + 1); err != nil {
			l.mu.err = err
			return true, err
		}
	}
	seq := l.mu.seq + 1
	if err := b.Set(commitLogKey, encodeCommitLogPosition(commitLogPosition{epoch: l.mu.epoch, seq: seq}), nil); err != nil {
		return true, err
	}
	n, err := l.appendLocked(b.Repr(), logEntry{epoch: l.mu.epoch, seq: seq, volume: id, version: version, parent: parent})
	if err != nil {
		l.mu.err = fmt.Errorf("write commit log: %w", err)
		return true, l.mu.err
	}
	l.mu.seq = seq
	l.mu.off += n
	return true, b.Commit(pebble.NoSync)
}

// appendLocked writes the entry of body at the log's end and returns its
// size. The header goes last, so that its CRC covers a body in place.
func (l *commitLog) appendLocked(body []byte, ent logEntry) (n int, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(&err)
	at := l.mu.off
	copy(l.m[at+commitLogEntryHeadLen:], body)
	head := l.m[at : at+commitLogEntryHeadLen]
	binary.BigEndian.PutUint32(head[0:4], uint32(len(body)))
	binary.BigEndian.PutUint64(head[4:12], ent.epoch)
	binary.BigEndian.PutUint64(head[12:20], ent.seq)
	binary.BigEndian.PutUint64(head[20:28], uint64(ent.volume))
	binary.BigEndian.PutUint64(head[28:36], uint64(ent.version))
	binary.BigEndian.PutUint64(head[36:44], uint64(ent.parent))
	binary.BigEndian.PutUint32(head[44:48], crc32.Update(crc32.Checksum(head[:44], castagnoli), castagnoli, body))
	return commitLogEntryHeadLen + len(body), nil
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
	if l.m == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if pebbleClosed && l.mu.err == nil {
		l.startLocked(l.mu.epoch + 1)
	}
	err := syscall.Munmap(l.m)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}
