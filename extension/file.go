package extension

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cambiumdb/cambium/engine"
)

// engines shares one Engine per data directory among every file of the
// process, and closes it when the last file closes.
var engines struct {
	sync.Mutex
	open map[string]*sharedEngine
}

type sharedEngine struct {
	e    *engine.Engine
	refs int
}

// budget is the engine's disk budget (engine.Options.CacheBudget), 0 for
// unbounded: the first open of a data directory in the process sets it,
// and a later one that asks for another budget is refused.
func acquireEngine(dir string, budget int64) (*engine.Engine, func() error, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("data directory %q: %w", dir, err)
	}
	engines.Lock()
	defer engines.Unlock()
	if engines.open == nil {
		engines.open = map[string]*sharedEngine{}
	}
	se, ok := engines.open[dir]
	if !ok {
		e, err := engine.Open(engine.Options{Dir: dir, CacheBudget: budget})
		if err != nil {
			return nil, nil, err
		}
		se = &sharedEngine{e: e}
		engines.open[dir] = se
	} else if have := se.e.Budget().Budget; budget != 0 && budget != have {
		return nil, nil, fmt.Errorf("%w: cache_budget=%d: this process has the data directory %s open with a budget of %d bytes (0: unbounded); a budget belongs to the directory, set by its first open",
			ErrConfig, budget, dir, have)
	}
	se.refs++
	var once sync.Once
	release := func() error {
		var err error
		once.Do(func() {
			engines.Lock()
			defer engines.Unlock()
			if se.refs--; se.refs == 0 {
				delete(engines.open, dir)
				err = se.e.Close()
			}
		})
		return err
	}
	return se.e, release, nil
}

// OpenFlags say how SQLite opens the main database.
type OpenFlags struct {
	ReadOnly bool
	Create   bool
}

// File is a main database file: a volume seen through SQLite's file and
// lock protocol. SQLite uses one File from one connection, one call at a
// time; different Files of one volume may be used concurrently.
//
// The lock levels map to the engine like this:
//
//	NONE       no snapshot; reads see the newest version
//	SHARED     a pinned snapshot: every read sees its version
//	RESERVED   the volume's write transaction, begun on that snapshot
//	           (ErrBusy if another connection writes, BUSY_SNAPSHOT if the
//	           snapshot is no longer the newest version)
//	PENDING,
//	EXCLUSIVE  the same: readers never need to be waited for
//
// Leaving RESERVED or above ends the transaction: it becomes one version
// if SQLite committed it, and leaves nothing if not. SQLite says so with
// SQLITE_FCNTL_COMMIT_PHASETWO (CommitPhaseTwo), which its pager sends on
// every successful commit, in every journal mode, after the journal is
// finalized and before the lock drops; a rollback, a failed commit or a
// connection closed mid-transaction never sends it. The rollback journal
// cannot be trusted to undo what reached the file: it lives in memory
// (journal_mode=MEMORY, which both adapters set, or a MemFile), and it
// never holds the pages SQLite took from the freelist, whose new bytes a
// transaction that outgrew SQLite's page cache wrote before it rolled
// back.
//
// The page size is the volume's at the version a transaction began on. A
// VACUUM after PRAGMA page_size=N writes the database at the new size
// through pages of the old one; the commit finds the new size in page 1's
// header and makes the version one of pages of N bytes (see commit).
type File struct {
	name     string
	readOnly bool
	eng      *engine.Engine
	release  func() error
	vol      *engine.Volume

	lock  LockLevel
	fixed *engine.Snapshot // the version=N snapshot of a time-travel open
	snap  *engine.Snapshot // pinned from SHARED up
	txn   *engine.Txn      // open from RESERVED up, until committed
	sync  syncLevel        // from PRAGMA synchronous
	buf   []byte
	page1 []byte // page 1 as WriteAt stores it
	// page1Written says the open write transaction wrote page 1 (and so
	// SQLite counted one more change); counterAhead that a commit that
	// did so made no version (see ReadAt).
	page1Written bool
	counterAhead bool
	// committed says SQLite committed the open write transaction
	// (CommitPhaseTwo); leaving the write lock without it rolls back.
	committed bool
	// length is the size in bytes a VACUUM that made pages smaller cut
	// the database to, 0 if none: not a whole number of the old pages.
	length int64

	remote   string           // URL of the volume's remote, "" if none
	gc       engine.GCOptions // retain= and min_age=, for PRAGMA cambium_gc
	stopSync func()           // ends this file's share of background sync
	// lineage is the volume's lineage when this file last told SQLite
	// the database's change counter (see ReadAt).
	lineage uint64
	warned  bool // the diverged refusal was logged
}

// syncLevel is SQLite's PRAGMA synchronous.
type syncLevel int

const (
	syncOff syncLevel = iota
	syncNormal
	syncFull
	syncExtra
)

// OpenMain opens the volume called name as a main database file. With a
// remote, a volume that does not exist locally is pulled from it first
// (metadata only); with a version, the file is a read-only view of that
// version. The volume takes cfg's retention window (of its local history)
// and rewarming: the last open of a volume sets them for all its files.
func OpenMain(name string, cfg Config, flags OpenFlags) (*File, error) {
	if strings.HasPrefix(name, "/") {
		// SQLite opens an attached database or the target of VACUUM INTO
		// with the connection's VFS unless its URI names another.
		return nil, fmt.Errorf("%w: %q is a file path, not a volume name; a plain database file opens with SQLite's own VFS, "+
			"named in a URI: file:%s?vfs=unix (vfs=os with github.com/ncruces/go-sqlite3)", engine.ErrInvalidName, name, name)
	}
	if err := engine.ValidateName(name); err != nil {
		return nil, err
	}
	e, release, err := acquireEngine(cfg.Dir, cfg.CacheBudget)
	if err != nil {
		return nil, withCode(fmt.Errorf("open %q: %w", name, err), ErrorCode(err, CodeCantOpen))
	}
	f, err := openMain(e, name, cfg, flags)
	if err != nil {
		release()
		return nil, err
	}
	f.release = release
	return f, nil
}

func openMain(e *engine.Engine, name string, cfg Config, flags OpenFlags) (*File, error) {
	vol, err := e.Volume(name)
	if err != nil {
		return nil, err
	}
	f := &File{name: name, readOnly: flags.ReadOnly || cfg.HasVersion || !cfg.At.IsZero(), eng: e, vol: vol, sync: syncFull, remote: cfg.Remote, gc: cfg.GCOptions(), lineage: vol.Lineage()}
	// The volume's own settings, shared by its files: the last open sets
	// them (see Config), before the pull below.
	vol.SetRetain(f.gc.Retain)
	vol.SetWarm(!cfg.NoWarm)
	if cfg.Remote != "" {
		if err := attach(vol, cfg.Remote); err != nil {
			return nil, withCode(fmt.Errorf("open %q: %w", name, err), CodeCantOpen)
		}
		if v, _, _ := vol.Head(); v == 0 && vol.Replication().Pushed == 0 {
			// Not here yet: take the remote's newest version, if any.
			ctx, cancel := context.WithTimeout(context.Background(), pragmaTimeout)
			_, err := vol.Pull(ctx)
			cancel()
			if err != nil && !errors.Is(err, engine.ErrAhead) {
				return nil, withCode(fmt.Errorf("open %q from %s: %w", name, cfg.Remote, err), CodeCantOpen)
			}
		}
	}
	if cfg.HasVersion || !cfg.At.IsZero() {
		ctx, cancel := context.WithTimeout(context.Background(), pragmaTimeout)
		n, err := engine.Version(cfg.Version), error(nil)
		if !cfg.At.IsZero() {
			n, _, err = vol.VersionAt(ctx, cfg.At)
		}
		var snap *engine.Snapshot
		if err == nil {
			snap, err = vol.SnapshotAt(ctx, n)
		}
		cancel()
		if err != nil {
			return nil, withCode(err, CodeCantOpen) // the engine's error names the volume and version
		}
		f.fixed = snap
		return f, nil
	}
	if v, _, _ := vol.Head(); v == 0 && !flags.Create && flags.ReadOnly {
		// A read-only open of a volume that does not exist: SQLite would
		// see an empty database; say plainly that there is none.
		return nil, withCode(fmt.Errorf("open %q read-only: no such volume in %s", name, cfg.Dir), CodeCantOpen)
	}
	if cfg.Sync > 0 {
		f.stopSync = startSync(vol, cfg.Sync, f.gc)
	}
	return f, nil
}

// Volume returns the file's volume.
func (f *File) Volume() *engine.Volume { return f.vol }

// LockState returns the current lock level.
func (f *File) LockState() LockLevel { return f.lock }

// Close ends any transaction (uncommitted changes are dropped) and releases
// the file's snapshot and engine.
func (f *File) Close() error {
	if f.stopSync != nil {
		f.stopSync()
		f.stopSync = nil
	}
	if f.fixed != nil {
		f.fixed.Release()
		f.fixed = nil
	}
	if f.txn != nil {
		f.txn.Rollback()
		f.txn = nil
	}
	if f.snap != nil {
		f.snap.Release()
		f.snap = nil
	}
	f.lock = LockNone
	if f.release == nil {
		return nil
	}
	err := f.release()
	f.release = nil
	return err
}

// view is what reads see: the transaction, the pinned snapshot, or (with no
// lock, as when SQLite checks the size before locking) the newest version.
type view interface {
	PageCount() uint32
	PageSize() int
	ReadPage(engine.PageNo, []byte) ([]byte, error)
}

func (f *File) view() (view, func(), error) {
	if f.fixed != nil {
		return f.fixed, func() {}, nil
	}
	if f.txn != nil {
		return f.txn, func() {}, nil
	}
	if f.snap != nil {
		return f.snap, func() {}, nil
	}
	s, err := f.vol.Pin()
	if err != nil {
		return nil, nil, withCode(fmt.Errorf("%q: %w", f.name, err), ErrorCode(err, CodeIOErr))
	}
	return s, s.Release, nil
}

// Size returns the size of the database as the current lock sees it.
func (f *File) Size() (int64, error) {
	v, done, err := f.view()
	if err != nil {
		return 0, err
	}
	defer done()
	return int64(v.PageCount()) * int64(v.PageSize()), nil
}

// ReadAt reads len(p) bytes at off, any offset and length (SQLite reads the
// 100-byte header, and whole pages). Past the end it returns what there is
// and io.EOF.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	v, done, err := f.view()
	if err != nil {
		return 0, err
	}
	defer done()
	ps := int64(v.PageSize())
	size := int64(v.PageCount()) * ps
	if off < 0 {
		return 0, withCode(fmt.Errorf("read %q at negative offset %d", f.name, off), CodeIOErrRead)
	}
	n := 0
	sizeValid := false // page 1 stores equal counter and version-valid-for
	for n < len(p) {
		at := off + int64(n)
		if at >= size {
			return n, io.EOF
		}
		pg := engine.PageNo(at/ps + 1)
		var err error
		f.buf, err = v.ReadPage(pg, f.buf[:0])
		if err != nil {
			err = fmt.Errorf("read page %d of %q: %w", pg, f.name, err)
			// SQLite reports only a code; the log says what failed.
			slog.Error("cambium: read failed", "err", err)
			return n, withCode(err, ErrorCode(err, CodeIOErrRead))
		}
		if pg == 1 {
			sizeValid = bytes.Equal(f.buf[24:28], f.buf[92:96])
		}
		n += copy(p[n:], f.buf[at%ps:])
	}
	if off < headerCounterEnd {
		putChangeCounter(p, off, viewVersion(v), sizeValid)
	}
	if off == 24 && len(p) == 16 {
		// SQLite reads these 16 bytes of the header (the change counter
		// first) to decide whether its page cache is still good. After a
		// reset replaced versions it may have cached, the counter of the
		// new version can equal the old one's; after a commit that made
		// no version, SQLite's own counter is one ahead of the volume's,
		// which the next version would match. Either way, report a
		// change once, so that SQLite drops its cache.
		if l := f.vol.Lineage(); l != f.lineage || f.counterAhead {
			f.lineage, f.counterAhead = l, false
			for i := range p {
				p[i] ^= 0xff
			}
		}
	}
	return n, nil
}

// WriteAt writes whole pages; SQLite writes nothing else to a rollback-
// journal database.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	txn, err := f.writer()
	if err != nil {
		return 0, withCode(fmt.Errorf("write %q: %w", f.name, err), ErrorCode(err, CodeIOErrWrite))
	}
	ps := int64(txn.PageSize())
	if ps == 0 {
		ps = int64(len(p)) // the first page of a new database sets the size
	}
	if len(p) == 0 || off < 0 || off/max(ps, 1) >= int64(^uint32(0)) {
		return 0, withCode(fmt.Errorf("write %q: %d bytes at offset %d is outside a database", f.name, len(p), off), CodeIOErrWrite)
	}
	if int64(len(p)) != ps || off%ps != 0 {
		// VACUUM writes a database of another page size through pages of
		// the old one (see commit); only its copy of the pages after the
		// lock byte of a database over 1 GiB, when it makes pages
		// smaller, comes as pages of the new size.
		return 0, withCode(fmt.Errorf("write %q: %w: %d bytes at offset %d, but pages are %d bytes (a VACUUM that makes the pages of a database over 1 GiB smaller is not supported)",
			f.name, engine.ErrPageSize, len(p), off, ps), CodeIOErrWrite)
	}
	page := p
	if off == 0 && txn.PageCount() > 0 {
		// Page 1 keeps the header fields ReadAt computes as they are
		// stored, so that a commit that changes nothing else in it does
		// not store it again.
		var err error
		if f.buf, err = txn.ReadPage(1, f.buf[:0]); err != nil {
			return 0, withCode(fmt.Errorf("write %q: %w", f.name, err), ErrorCode(err, CodeIOErrWrite))
		}
		f.page1 = append(f.page1[:0], p...)
		copy(f.page1[24:28], f.buf[24:28])
		copy(f.page1[92:100], f.buf[92:100])
		page = f.page1
	}
	if off == 0 {
		f.page1Written = true
	}
	if err := txn.WritePage(engine.PageNo(off/ps+1), page); err != nil {
		return 0, withCode(fmt.Errorf("write %q: %w", f.name, err), ErrorCode(err, CodeIOErrWrite))
	}
	return len(p), nil
}

// The database header's change counter (bytes 24-27) and version-valid-for
// number (92-95) are the volume's version as SQLite reads them, whatever
// page 1 holds; SQLite compares the counter with the one it saw last to
// decide whether its page cache is still good, and trusts the header's
// page count while the two are equal. SQLite increments the counter in
// every write transaction (and writes its own version number at 96-99):
// stored as written, page 1 would be stored again by every commit.
// Instead WriteAt keeps the stored bytes of these fields, and a commit
// stores page 1 only when something else in it changed.
//
// SQLite writes the old counter plus one, and the commit makes the next
// version, so a connection's own commit leaves its cache good.
const headerCounterEnd = 96

// putChangeCounter puts the change counter of version ver into the bytes
// of p, which were read from offset off, that hold one: the counter, and
// the version-valid-for number if sizeValid (page 1 stores the two equal,
// so that the header's page count is SQLite's own, which a file from an
// old or foreign writer may not have).
func putChangeCounter(p []byte, off int64, ver engine.Version, sizeValid bool) {
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], uint32(ver))
	fields := []int64{24, 92}
	if !sizeValid {
		fields = fields[:1]
	}
	for _, at := range fields {
		for i := range int64(4) {
			if j := at + i - off; j >= 0 && j < int64(len(p)) {
				p[j] = c[i]
			}
		}
	}
}

// viewVersion is the version reads of v see: for a write transaction,
// its base.
func viewVersion(v view) engine.Version {
	if txn, ok := v.(*engine.Txn); ok {
		return txn.Base()
	}
	return v.(*engine.Snapshot).Version()
}

// Truncate cuts the database to size bytes, a whole number of pages.
func (f *File) Truncate(size int64) error {
	txn, err := f.writer()
	if err != nil {
		return withCode(fmt.Errorf("truncate %q: %w", f.name, err), ErrorCode(err, CodeIOErrTrunc))
	}
	ps := int64(txn.PageSize())
	if ps == 0 {
		if size == 0 {
			return nil
		}
		return withCode(fmt.Errorf("truncate empty %q to %d bytes", f.name, size), CodeIOErrTrunc)
	}
	if size%ps != 0 && size > 0 && size < int64(txn.PageCount())*ps {
		// A VACUUM that makes pages smaller cuts the database to a whole
		// number of its new pages (see commit), which page 1 now declares.
		if n, err := f.declaredPageSize(txn); err == nil && n != int(ps) && size%int64(n) == 0 {
			f.length = size
			return nil
		}
	}
	if size < 0 || size%ps != 0 || size/ps > int64(^uint32(0)) {
		return withCode(fmt.Errorf("truncate %q to %d bytes: not a whole number of %d-byte pages", f.name, size, ps), CodeIOErrTrunc)
	}
	f.length = 0
	if err := txn.Truncate(uint32(size / ps)); err != nil {
		return withCode(fmt.Errorf("truncate %q: %w", f.name, err), CodeIOErrTrunc)
	}
	return nil
}

// writer returns the open write transaction. SQLite writes only under a
// write lock, whose transaction Lock began.
func (f *File) writer() (*engine.Txn, error) {
	if f.txn == nil {
		return nil, withCode(fmt.Errorf("write without a write lock (lock is %s)", f.lock), CodeMisuse)
	}
	return f.txn, nil
}

// Lock raises the lock to level.
func (f *File) Lock(level LockLevel) error {
	if level <= f.lock {
		return nil
	}
	if f.lock == LockNone {
		if f.fixed == nil {
			snap, err := f.vol.Pin()
			if err != nil {
				return withCode(fmt.Errorf("lock %q: %w", f.name, err), ErrorCode(err, CodeIOErrLock))
			}
			f.snap = snap
		}
		f.lock = LockShared
	}
	if level >= LockReserved && f.lock < LockReserved {
		if f.readOnly {
			return withCode(fmt.Errorf("%q: %w", f.name, ErrReadOnly), CodeReadOnly)
		}
		txn, err := f.vol.Begin(f.snap)
		if err != nil {
			if errors.Is(err, engine.ErrDiverged) && !f.warned {
				// SQLite says only "attempt to write a readonly database".
				slog.Warn("cambium: write refused", "err", err)
				f.warned = true
			}
			return withCode(fmt.Errorf("lock %q for writing: %w", f.name, err), ErrorCode(err, CodeIOErrLock))
		}
		f.txn, f.page1Written, f.committed, f.length = txn, false, false, 0
	}
	f.lock = level
	return nil
}

// CommitPhaseTwo records that SQLite committed the open write transaction
// (SQLITE_FCNTL_COMMIT_PHASETWO): leaving the write lock will make it a
// version. Outside a write transaction it does nothing.
func (f *File) CommitPhaseTwo() error {
	f.committed = f.txn != nil
	return nil
}

// Unlock lowers the lock to level (SHARED or NONE). Leaving the write lock
// commits the write transaction if SQLite committed it (CommitPhaseTwo),
// and otherwise rolls it back: a ROLLBACK, a failed COMMIT, a connection
// closed mid-transaction, and SQLite's error path straight to NONE.
func (f *File) Unlock(level LockLevel) error {
	if level >= f.lock {
		return nil
	}
	var err error
	if f.lock >= LockReserved && f.txn != nil {
		if f.committed {
			err = f.commit()
		} else {
			f.rollback()
		}
	}
	if level == LockNone && f.snap != nil {
		f.snap.Release()
		f.snap = nil
	}
	f.lock = level
	return err
}

// rollback drops the open write transaction. SQLite's page cache may still
// hold bytes the volume does not (a page taken from the freelist that the
// journal did not restore); if the transaction wrote anything, the next
// read of the header tells SQLite to drop its cache, so that it never
// serves them (see ReadAt).
func (f *File) rollback() {
	txn := f.txn
	f.txn, f.committed, f.page1Written = nil, false, false
	if txn.Dirty() {
		f.counterAhead = true
	}
	if err := txn.Rollback(); err != nil {
		// Nothing of it is visible; the engine deletes what it spilled
		// when it next opens.
		slog.Error("cambium: rollback", "volume", f.name, "err", err)
	}
}

// commit commits the open write transaction and moves the snapshot to the
// version it made.
func (f *File) commit() error {
	txn := f.txn
	f.txn, f.committed = nil, false
	d := engine.Durable
	if f.sync < syncFull {
		d = engine.Buffered
	}
	wrote1 := f.page1Written
	f.page1Written = false
	err := f.changePageSize(txn, wrote1)
	var next *engine.Snapshot
	if err == nil {
		next, err = txn.Commit(d)
	}
	if err != nil {
		txn.Rollback()
		f.counterAhead = true
		return withCode(fmt.Errorf("commit %q: %w", f.name, err), ErrorCode(err, CodeIOErr))
	}
	if wrote1 && next.Version() == txn.Base() {
		// Every page SQLite wrote, page 1's counter aside, was as
		// before: no version, yet SQLite counted one.
		f.counterAhead = true
	}
	f.snap.Release()
	f.snap = next
	return nil
}

// The database header's page size: two bytes at offset 16, big-endian,
// 1 meaning 65536.
const headerPageSize = 16

// sqliteMagic begins the header of every SQLite database.
const sqliteMagic = "SQLite format 3\x00"

// declaredPageSize returns the page size page 1 of txn declares: the
// volume's own when page 1 is not a SQLite header or declares no page
// size SQLite can use (a file written by something other than SQLite's
// pager is left as it is).
func (f *File) declaredPageSize(txn *engine.Txn) (int, error) {
	var err error
	if f.buf, err = txn.ReadPage(1, f.buf[:0]); err != nil {
		return 0, err
	}
	if len(f.buf) < 100 || string(f.buf[:len(sqliteMagic)]) != sqliteMagic {
		return txn.PageSize(), nil
	}
	n := int(binary.BigEndian.Uint16(f.buf[headerPageSize:]))
	if n == 1 {
		n = 65536
	}
	if n < 512 || n > 65536 || n&(n-1) != 0 {
		return txn.PageSize(), nil
	}
	return n, nil
}

// changePageSize makes txn, if SQLite wrote page 1 (wrote1) with another
// page size in its header, a rewrite at that size: what VACUUM does after
// PRAGMA page_size=N. It writes the database at the new size through
// pages of the old one, which the volume stores as written, then cuts it
// to a whole number of new pages; once committed, SQLite reads and writes
// pages of the new size. The engine cuts the bytes into pages of the new
// size and stores them as a version of that size.
func (f *File) changePageSize(txn *engine.Txn, wrote1 bool) error {
	length := f.length
	f.length = 0
	if !wrote1 || txn.PageCount() == 0 {
		return nil
	}
	n, err := f.declaredPageSize(txn)
	if err != nil || n == txn.PageSize() {
		return err
	}
	if length == 0 {
		length = int64(txn.PageCount()) * int64(txn.PageSize())
	}
	slog.Info("cambium: page size changed", "volume", f.name, "from", txn.PageSize(), "to", n)
	return txn.SetPageSize(n, length)
}

// CheckReservedLock reports whether any connection holds the volume's write
// lock.
func (f *File) CheckReservedLock() (bool, error) {
	return f.lock >= LockReserved || f.vol.Writing(), nil
}

// errNotFound tells a binding that a pragma is not Cambium's: SQLite should
// handle it itself.
var errNotFound = withCode(errors.New("not a cambium pragma"), CodeNotFound)

// ReadOnly reports whether the file refuses writes: opened read-only, or
// at a past version.
func (f *File) ReadOnly() bool { return f.readOnly }
