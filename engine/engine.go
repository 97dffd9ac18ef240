package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/cambiumdb/cambium/engine/internal/commitlog"
)

// Options configure an Engine. The zero value of every field but Dir means
// its default.
type Options struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// CacheBytes is the budget of the in-memory cache of hot pages, shared
	// by all volumes (default 64 MiB; negative disables it).
	CacheBytes int64
	// CacheBudget bounds the bytes of page images stored in the data
	// directory, every volume together: past it, images that are safe in
	// the remote are evicted back to stubs, least recently read first,
	// and fetched again when read (see budget.go). Zero means unbounded;
	// images not yet pushed are never evicted, so a writer ahead of its
	// remote may exceed it (Engine.Budget says by how much).
	CacheBudget int64
	// SpillBytes is how large a write transaction's staged pages may grow
	// in memory before they are written to disk early (default 32 MiB).
	SpillBytes int64
	// Logger receives the engine's rare operational messages (default:
	// slog.Default()).
	Logger *slog.Logger
	// Exclusive keeps the data directory to this process: it serves no
	// other, and fails with ErrDirLocked where another process owns the
	// directory, instead of joining it (see share.go).
	Exclusive bool

	// testingKnobs are settings only the engine's tests make; zero means
	// the default.
	testingKnobs struct {
		commitLogSize int // the commit log file's size (commitlog.Options.Size)
		// when the commit log applies deferred commits (commitlog.Options
		// ApplyBytes, ApplyDelay)
		applyBytes int
		applyDelay time.Duration
		evictBatch int // location records an eviction batch walks (evictBatch)
		// joinOwn lets an Engine join the owner of its directory in its
		// own process (see ownOrJoin), which tests do to run the client
		// path under the race detector.
		joinOwn bool
		// joinTimeout replaces joinTimeout (client.go).
		joinTimeout time.Duration
		// afterEvict is called after each eviction batch is applied.
		afterEvict func()
	}
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("%w: no data directory", ErrOptions)
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 64 << 20
	}
	if o.SpillBytes == 0 {
		o.SpillBytes = 32 << 20
	}
	if o.CacheBudget < 0 {
		return o, fmt.Errorf("%w: CacheBudget %d", ErrOptions, o.CacheBudget)
	}
	if o.SpillBytes < 0 {
		return o, fmt.Errorf("%w: SpillBytes %d", ErrOptions, o.SpillBytes)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Durability says when a commit may return.
type Durability int

const (
	// Durable commits are on stable storage (fsync) before Commit returns:
	// SQLite's synchronous=FULL and EXTRA.
	Durable Durability = iota
	// Buffered commits are written to the operating system before Commit
	// returns, and reach stable storage with the next Durable commit or
	// log rotation: they survive the process being killed, not the machine
	// losing power. SQLite's synchronous=NORMAL and OFF.
	Buffered
)

// Engine stores the volumes of one data directory. It is safe for
// concurrent use.
type Engine struct {
	opts  Options
	dir   string
	db    *pebble.DB
	lock  *os.File
	cache *pageCache

	pruneKick chan struct{}
	pruneDone chan struct{}
	// bg tracks background work (readahead) that Close cancels and waits
	// for; bgCtx is its context.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc

	// clog is the store's write-ahead log (see package commitlog).
	clog *commitlog.Log
	// failed is set by the first write that fails: after it the store's
	// state is unknown, so the engine refuses writes until reopened.
	failed atomic.Pointer[error]

	mu struct {
		sync.Mutex
		volumes map[string]*Volume // opened volumes, by name
		closed  bool
	}
	// idMu serialises volume ID assignment (first commit of a volume).
	idMu sync.Mutex

	// budget keeps page images within Options.CacheBudget (nil when
	// unbounded). evictMu is held by the evictor around each of its
	// batches and by the pruner around its own, so that an eviction never
	// writes a stub where the pruner deleted an image.
	budget  *budget
	evictMu sync.Mutex

	nextSeed atomic.Uint64

	// srv serves the directory to other processes (nil if Exclusive); cl
	// is set instead of everything above but opts and dir in a process
	// that joined another's directory (see client.go).
	srv *server
	cl  *client
	// writeLocks are the volumes' write locks across processes (nil if
	// Exclusive; see writelock.go).
	writeLocks *writeLocks
}

// lockFileName is the file in the data directory that one process holds
// locked while it has the directory open.
const lockFileName = "cambium.lock"

// Open opens the data directory, creating it if needed, and finishes or
// undoes whatever a crash interrupted.
func Open(opts Options) (*Engine, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("data directory %q: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	return openShared(opts, dir)
}

// openOwned opens the directory whose lock this process holds.
func openOwned(opts Options, dir string, lock *os.File) (*Engine, error) {
	db, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		// The commit log is the write-ahead log (see package commitlog).
		DisableWAL:   true,
		MemTableSize: 64 << 20,
		Logger:       pebbleLogger{opts.Logger},
		// Pebble's default for corruption found on disk is a fatal log,
		// which would crash the process; the read that met it returns an
		// error instead, which the engine reports as ErrCorrupt.
		EventListener: &pebble.EventListener{DataCorruption: func(i pebble.DataCorruptionInfo) {
			opts.Logger.Error("cambium: corrupt data on disk", "dir", dir, "path", i.Path, "err", i.Details)
		}},
	})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open pebble in %s: %w", dir, err)
	}
	e := &Engine{
		opts:      opts,
		dir:       dir,
		db:        db,
		lock:      lock,
		pruneKick: make(chan struct{}, 1),
		pruneDone: make(chan struct{}),
	}
	if opts.CacheBytes > 0 {
		e.cache = newPageCache(opts.CacheBytes)
	}
	e.bgCtx, e.bgCancel = context.WithCancel(context.Background())
	e.mu.volumes = map[string]*Volume{}
	if err := e.undoSpills(); err != nil {
		db.Close()
		lock.Close()
		return nil, err
	}
	e.clog, err = commitlog.Open(commitlog.Options{
		DB:          db,
		Dir:         dir,
		PositionKey: commitLogKey,
		HeadVersion: e.headVersion,
		Logger:      opts.Logger,
		Size:        opts.testingKnobs.commitLogSize,
		ApplyBytes:  opts.testingKnobs.applyBytes,
		ApplyDelay:  opts.testingKnobs.applyDelay,
	})
	if err != nil {
		db.Close()
		lock.Close()
		if errors.Is(err, commitlog.ErrCorrupt) {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return nil, err
	}
	if opts.CacheBudget > 0 {
		// Counted under a snapshot taken before any volume can change:
		// every later change is counted as it happens.
		e.budget = newBudget(e, opts.CacheBudget)
		e.budget.start(db.NewSnapshot())
	}
	go e.pruneLoop()
	if !opts.Exclusive {
		if e.writeLocks, err = openWriteLocks(dir); err != nil {
			e.Close()
			return nil, err
		}
		if err := e.serve(); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// headVersion returns the version of volume id's head record, 0 if the
// volume is not stored: the commit log's replay asks it whether an entry's
// parent is still the head.
func (e *Engine) headVersion(id uint64) (uint64, error) {
	raw, found, err := e.get(headKey(VolumeID(id)))
	if err != nil || !found {
		return 0, err
	}
	h, err := decodeHeadRecord(fmt.Sprintf("head record of volume %d", id), raw)
	return uint64(h.version), err
}

// logEntry is the commit log entry of a batch that moves volume id's head
// from parent to version.
func logEntry(id VolumeID, version, parent Version) commitlog.Entry {
	return commitlog.Entry{Volume: uint64(id), Version: uint64(version), Parent: uint64(parent)}
}

// background runs fn in a goroutine that Close cancels (through fn's
// context) and waits for. It returns false, and does not run fn, once the
// engine is closing.
func (e *Engine) background(fn func(ctx context.Context)) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return false
	}
	e.bg.Go(func() { fn(e.bgCtx) })
	return true
}

// Dir returns the absolute data directory.
func (e *Engine) Dir() string { return e.dir }

// Close waits for background work, then closes the store. Snapshots and
// transactions must not be used afterwards.
func (e *Engine) Close() error {
	if e.cl != nil {
		return e.cl.close()
	}
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return nil
	}
	e.mu.closed = true
	e.mu.Unlock()
	if e.srv != nil {
		e.srv.close()
	}
	e.bgCancel()
	e.bg.Wait()
	close(e.pruneKick)
	<-e.pruneDone
	// Pebble keeps no log of its own: what its memtables hold is written
	// to tables now, or replayed from the commit log by the next Open.
	err := e.clog.Drain()
	if err == nil {
		err = e.db.Flush()
	}
	if cerr := e.db.Close(); err == nil {
		err = cerr
	}
	if cerr := e.clog.Close(err == nil); err == nil {
		err = cerr
	}
	e.writeLocks.close()
	if lerr := e.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// Volume returns the volume called name, opening it on first use. A volume
// that was never committed to is empty (version 0, no pages, page size 0)
// and is stored by its first commit.
func (e *Engine) Volume(name string) (*Volume, error) {
	if e.cl != nil {
		if err := ValidateName(name); err != nil {
			return nil, err
		}
		return e.cl.volume(name), nil
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return nil, ErrClosed
	}
	if v, ok := e.mu.volumes[name]; ok {
		return v, nil
	}
	v, err := e.loadVolume(name)
	if err != nil {
		return nil, err
	}
	e.mu.volumes[name] = v
	return v, nil
}

// MemoryStats says what an engine holds in memory.
type MemoryStats struct {
	Volumes    int   // volumes opened in this process and kept
	CacheBytes int64 // page images in the page cache
}

// Memory reports what the engine holds in memory.
func (e *Engine) Memory() MemoryStats {
	if e.cl != nil {
		if l := e.cl.local(); l != nil {
			return l.Memory()
		}
		return MemoryStats{}
	}
	e.mu.Lock()
	m := MemoryStats{Volumes: len(e.mu.volumes)}
	e.mu.Unlock()
	if e.cache != nil {
		for i := range e.cache.shards {
			s := &e.cache.shards[i]
			s.mu.Lock()
			m.CacheBytes += s.mu.bytes
			s.mu.Unlock()
		}
	}
	return m
}

// Volumes returns the names of every stored volume, in order.
func (e *Engine) Volumes() ([]string, error) {
	if e.cl != nil {
		return clientEngineCall(e, "volumes", (*Engine).Volumes)
	}
	it, err := e.newIter(&pebble.IterOptions{LowerBound: []byte{tagVolume}, UpperBound: []byte{tagVolume + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var names []string
	for it.First(); it.Valid(); it.Next() {
		names = append(names, string(it.Key()[1:]))
	}
	return names, it.Error()
}

// settle makes Pebble hold every commit logged so far: commits apply their
// batches to Pebble after they return (commitlog's WriteDeferred), and a
// read of Pebble must see them all. Every read of Pebble but the page
// cache's goes through it (get, newIter): cheap when nothing waits.
func (e *Engine) settle() error {
	if e.clog == nil || !e.clog.Pending() {
		return nil // opening (replay reads heads), or nothing waits
	}
	if err := e.clog.Drain(); err != nil {
		return e.fail(fmt.Errorf("apply logged commits: %w", err))
	}
	return nil
}

// newIter opens a Pebble iterator that sees every commit made so far.
func (e *Engine) newIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	if err := e.settle(); err != nil {
		return nil, err
	}
	return e.db.NewIter(o)
}

// getRaw reads a key's value as e.db.Get does, after settle.
func (e *Engine) getRaw(key []byte) ([]byte, io.Closer, error) {
	if err := e.settle(); err != nil {
		return nil, nil, err
	}
	return e.db.Get(key)
}

// get reads a key's value; found is false when the key is absent.
func (e *Engine) get(key []byte) (value []byte, found bool, err error) {
	v, closer, err := e.getRaw(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	value = append([]byte(nil), v...)
	return value, true, closer.Close()
}

// assignVolumeID allocates the next volume ID in batch b. The caller holds
// e.idMu until b is applied.
func (e *Engine) assignVolumeIDLocked(b *pebble.Batch) (VolumeID, error) {
	raw, found, err := e.get(nextVolumeIDKey)
	if err != nil {
		return 0, fmt.Errorf("read next volume id: %w", err)
	}
	id := VolumeID(1)
	if found {
		if len(raw) != 8 {
			return 0, fmt.Errorf("%w: next volume id is %d bytes", ErrCorrupt, len(raw))
		}
		id = VolumeID(binary.BigEndian.Uint64(raw))
	}
	if err := b.Set(nextVolumeIDKey, binary.BigEndian.AppendUint64(nil, uint64(id+1)), nil); err != nil {
		return 0, err
	}
	return id, nil
}

// undoSpills deletes the pages of write transactions that spilled to disk
// and never committed: a crash left their spill records behind.
func (e *Engine) undoSpills() error {
	it, err := e.newIter(&pebble.IterOptions{LowerBound: []byte{tagSpill}, UpperBound: []byte{tagSpill + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	b := e.db.NewBatch()
	defer b.Close()
	for it.First(); it.Valid(); it.Next() {
		if len(it.Key()) != 9 {
			return fmt.Errorf("%w: spill key %x", ErrCorrupt, it.Key())
		}
		id := VolumeID(binary.BigEndian.Uint64(it.Key()[1:9]))
		rec, err := decodeSpillRecord(fmt.Sprintf("spill record of volume %d", id), it.Value())
		if err != nil {
			return err
		}
		// A record at or below the head is stale (its version committed
		// since, without spilling): its pages are the commit's, keep them.
		stale := false
		if raw, found, err := e.get(headKey(id)); err != nil {
			return err
		} else if found {
			head, err := decodeHeadRecord(fmt.Sprintf("head record of volume %d", id), raw)
			if err != nil {
				return err
			}
			stale = rec.version <= head.version
		}
		for p := range roaring.Values(rec.pages) {
			if stale {
				break
			}
			if err := b.Delete(pageKey(id, PageNo(p), rec.version), nil); err != nil {
				return err
			}
		}
		if err := b.Delete(append([]byte(nil), it.Key()...), nil); err != nil {
			return err
		}
		e.opts.Logger.Info("cambium: discarded an uncommitted write transaction left by a crash",
			"dir", e.dir, "volume_id", id, "version", rec.version, "pages", rec.pages.GetCardinality())
	}
	if err := it.Error(); err != nil {
		return err
	}
	if b.Empty() {
		return nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return e.db.Flush()
}

// pebbleLogger passes Pebble's errors on and keeps its chatter quiet.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(string, ...any) {}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error("pebble: fatal: " + fmt.Sprintf(format, args...))
	panic(fmt.Sprintf("pebble: "+format, args...))
}

var _ io.Closer = (*Engine)(nil)

// fail records the first write failure; it returns err, wrapped to say the
// engine now refuses writes.
func (e *Engine) fail(err error) error {
	wrapped := fmt.Errorf("%w (the engine refuses writes until the data directory is reopened)", err)
	e.failed.CompareAndSwap(nil, &wrapped)
	return wrapped
}

// writable returns the error that stopped writes, if one did.
func (e *Engine) writable() error {
	if p := e.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// readError wraps an error of a Pebble read, as ErrCorrupt when Pebble
// found the data on disk damaged.
func (e *Engine) readError(what string, err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %s in %s: %v", ErrCorrupt, what, e.dir, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
