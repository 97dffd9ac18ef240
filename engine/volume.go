package engine

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cambiumdb/cambium/engine/internal/readahead"
	"github.com/cambiumdb/cambium/remote"
)

// state is one published version of a volume. It is immutable; a commit
// publishes a new one.
type state struct {
	version   Version
	pageCount uint32
	pageSize  uint32 // 0 until the first commit
	// shrinks lists the truncations the pruner has not yet applied, oldest
	// first: a page image older than a truncation that cut its page off is
	// not visible to snapshots at or after the truncation.
	shrinks []shrink
}

type shrink struct {
	version   Version
	pageCount uint32
}

// cutOff reports whether the image of page p written at version u was cut
// off by a truncation after u and at or before v.
func (s *state) cutOff(p PageNo, u, v Version) bool {
	for _, sh := range s.shrinks {
		if sh.version > u && sh.version <= v && uint32(p) > sh.pageCount {
			return true
		}
	}
	return false
}

// Volume is one named volume of an Engine. It is safe for concurrent use.
// Its fields are grouped by the concern they serve; engine/doc.go
// (Concurrency) says what guards each and the order locks are taken in.
type Volume struct {
	e         *Engine
	name      string
	cacheSeed uint64

	// The head, published without locks.
	head atomic.Pointer[state] // the newest committed version
	// committing is the version of the newest commit begun; it runs ahead
	// of head while a commit is being applied (see pageCache).
	committing atomic.Uint64
	// cacheGen changes when a truncation makes cached images suspect.
	cacheGen atomic.Uint64
	// lineage changes when Reset replaces versions this process may have
	// seen with the remote's; see Lineage.
	lineage atomic.Uint64
	// id is the volume's ID, 0 until a write stores the volume.
	id atomic.Uint64

	// Writing: writer is held by the open write transaction, if any, and
	// by a pull or a reset while it moves the head; writing mirrors it for
	// observers that must not contend for it.
	writer  sync.Mutex
	writing atomic.Bool

	// Replication: pushMu serialises pushes, pulls, polls and resets;
	// replState is the replication record's current value (never nil);
	// attached the remote the volume is attached to, if any.
	pushMu    sync.Mutex
	replState atomic.Pointer[replRecord]
	attached  atomic.Pointer[replica]

	// Lazy fetch: fetchMu keeps the pruner (writer) from deleting stubs
	// that fetched frames replace (readers); ra plans the fetches of scans
	// of remote pages (see package readahead); raExtending is set while a
	// background prefetch is being planned and started (see
	// extendReadahead). The frames being fetched are the attachment's.
	fetchMu     sync.RWMutex
	ra          readahead.Planner[stub]
	raExtending atomic.Bool
	catchUp     atomic.Pointer[catchUp] // what the newest pull changed (see catchUpWindow)

	// Garbage collection: gcMu serialises the volume's collections in
	// this process; gcCommits and gcRollups, guarded by it, keep what the
	// collector read of the remote's commits (by parent) and rollups (by
	// listing), which never change.
	gcMu      sync.Mutex
	gcCommits map[Version]commitSummary
	gcRollups map[remote.ObjectInfo][]SegmentID
	// retain is the retention window of the local history, in
	// nanoseconds (see SetRetain).
	retain atomic.Int64
	// warm says whether pulls rewarm the hot set (see SetWarm); warming
	// counts the rewarms running.
	warm    atomic.Bool
	warming sync.WaitGroup

	// Snapshot pins, and the pruner's state.
	mu struct {
		sync.Mutex
		pins          map[Version]int // pinned snapshots, by version
		prunedThrough Version         // the pruner is done through this version
		pruning       Version         // the end of the prune step in progress, 0 if none
		// superseded lists, in version order, for each page written by
		// the commits from supersededFrom on that the pruner has not
		// reached, the image the commit superseded (see pruneStep).
		superseded     []supersession
		supersededFrom Version
		// changes are the newest moves of the head, after changesFrom,
		// for other processes' page caches (see share.go).
		changes     []change
		changesFrom Version
	}

	stats volumeStats

	// syncLease says whose background sync loop has the volume's turn
	// (see SyncTurn).
	syncLease syncLease

	// cv is set in a process that joined another's data directory: the
	// volume is the owner's (see client.go).
	cv *clientVolume
}

// volumeStats count what this process did with the volume.
type volumeStats struct {
	pageReads     atomic.Int64
	cacheHits     atomic.Int64
	commits       atomic.Int64
	pagesFetched  atomic.Int64
	framesFetched atomic.Int64
	rewarms       atomic.Int64
	remoteReads   atomic.Int64
}

// Stats are a volume's counters since this process opened it.
type Stats struct {
	PageReads     int64 // pages read through snapshots and transactions
	CacheHits     int64 // of those, served from the in-memory page cache
	Commits       int64 // versions committed
	PagesFetched  int64 // page images downloaded from the remote and stored
	FramesFetched int64 // segment frames downloaded from the remote
	// RemoteReads counts the page reads that found the page in the remote
	// only (a stub: pulled and not fetched yet, or evicted): the misses
	// of the data directory's cache.
	RemoteReads int64
}

// Stats returns the volume's counters.
func (v *Volume) Stats() Stats {
	if v.cv != nil {
		s, _ := clientCall(v, "stats", nil, nil, func(lv *Volume) (Stats, error) { return lv.Stats(), nil })
		s.PageReads, s.CacheHits = v.stats.pageReads.Load(), v.stats.cacheHits.Load()
		return s
	}
	return Stats{
		PageReads:     v.stats.pageReads.Load(),
		CacheHits:     v.stats.cacheHits.Load(),
		Commits:       v.stats.commits.Load(),
		PagesFetched:  v.stats.pagesFetched.Load(),
		FramesFetched: v.stats.framesFetched.Load(),
		RemoteReads:   v.stats.remoteReads.Load(),
	}
}

// Writing reports whether a write transaction is open on the volume.
func (v *Volume) Writing() bool {
	if v.cv != nil {
		if lv, _, err := v.cv.local(); err == nil && lv != nil {
			return lv.Writing()
		}
		return v.writing.Load() || v.cv.c.writeLocks.heldElsewhere(v.name)
	}
	return v.writing.Load() || v.e.writeLocks.heldElsewhere(v.name)
}

// Name returns the volume's name.
func (v *Volume) Name() string { return v.name }

// Head returns the newest version, its page count and the page size (0 for
// a volume that was never committed to).
func (v *Volume) Head() (Version, uint32, int) {
	if v.cv != nil {
		s, err := v.cv.snapshot()
		if err != nil {
			return 0, 0, 0
		}
		defer s.Release()
		return s.st.version, s.st.pageCount, int(s.st.pageSize)
	}
	st := v.head.Load()
	return st.version, st.pageCount, int(st.pageSize)
}

// loadVolume reads a volume's records. The caller holds e.mu.
func (e *Engine) loadVolume(name string) (*Volume, error) {
	v := &Volume{e: e, name: name, cacheSeed: e.nextSeed.Add(0x9e3779b97f4a7c15)}
	v.mu.pins = map[Version]int{}
	v.replState.Store(&replRecord{})
	v.retain.Store(int64(DefaultRetain))
	v.warm.Store(true)
	raw, found, err := e.get(volumeKey(name))
	if err != nil {
		return nil, fmt.Errorf("open volume %q: %w", name, err)
	}
	if !found {
		v.head.Store(&state{})
		v.mu.supersededFrom = 1
		return v, nil
	}
	rec, err := decodeVolumeRecord(name, raw)
	if err != nil {
		return nil, err
	}
	v.id.Store(uint64(rec.id))
	what := fmt.Sprintf("head record of %q", name)
	raw, found, err = e.get(headKey(rec.id))
	if err != nil {
		return nil, fmt.Errorf("open volume %q: %w", name, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s is missing", ErrCorrupt, what)
	}
	head, err := decodeHeadRecord(what, raw)
	if err != nil {
		return nil, err
	}
	if raw, found, err = e.get(prunedKey(rec.id)); err != nil {
		return nil, fmt.Errorf("open volume %q: %w", name, err)
	} else if found {
		if v.mu.prunedThrough, err = decodePrunedRecord(fmt.Sprintf("pruned record of %q", name), raw); err != nil {
			return nil, err
		}
	}
	repl, err := v.loadRepl(rec.id)
	if err != nil {
		return nil, err
	}
	v.replState.Store(&repl)
	st := &state{version: head.version, pageCount: head.pageCount, pageSize: head.pageSize}
	// Truncations the pruner has not applied yet still hide old images.
	if err := e.forCommits(rec.id, v.mu.prunedThrough+1, head.version, func(ver Version, c commitRecord, parentCount uint32) error {
		if c.pageCount < parentCount {
			st.shrinks = append(st.shrinks, shrink{version: ver, pageCount: c.pageCount})
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("open volume %q: %w", name, err)
	}
	v.head.Store(st)
	v.mu.supersededFrom = st.version + 1
	v.committing.Store(uint64(st.version))
	return v, nil
}

// forCommits calls fn for each commit record of versions from..to, in
// order, with the page count of its parent. When from is the oldest
// version whose record is kept (see pruneHistory), the first commit's
// parent count is taken to be its own: the parent's record is gone.
func (e *Engine) forCommits(id VolumeID, from, to Version, fn func(Version, commitRecord, uint32) error) error {
	if from > to {
		return nil
	}
	parentCount := uint32(0)
	if from > 1 {
		raw, found, err := e.get(commitKey(id, from-1))
		if err != nil {
			return err
		}
		switch {
		case found:
			c, err := decodeCommitRecord(fmt.Sprintf("commit record %d of volume %d", from-1, id), raw)
			if err != nil {
				return err
			}
			parentCount = c.pageCount
		default:
			first, ok, err := e.firstCommit(id)
			if err != nil {
				return err
			}
			if !ok || first != from {
				return fmt.Errorf("%w: commit record %d of volume %d is missing", ErrCorrupt, from-1, id)
			}
			// from starts the history that is kept (see pruneHistory):
			// its parent's record is gone, and with it its page count.
			parentCount = noParentCount
		}
	}
	it, err := e.newIter(&pebble.IterOptions{LowerBound: commitKey(id, from), UpperBound: commitKey(id, to+1)})
	if err != nil {
		return err
	}
	defer it.Close()
	// A commit covers (parent, version]: one version when made locally,
	// any number when pulled from the remote.
	prev := from - 1
	if parentCount == noParentCount {
		prev = 0 // the first record's parent, whatever it is
	}
	for it.First(); it.Valid(); it.Next() {
		if len(it.Key()) != 17 {
			return fmt.Errorf("%w: commit key %x of volume %d", ErrCorrupt, it.Key(), id)
		}
		ver := Version(beUint64(it.Key()[9:17]))
		what := fmt.Sprintf("commit record %d of volume %d", ver, id)
		c, err := decodeCommitRecord(what, it.Value())
		if err != nil {
			return err
		}
		if parentCount == noParentCount {
			prev, parentCount = c.parent, c.pageCount
		}
		if c.parent != prev || ver <= prev {
			return fmt.Errorf("%w: %s has parent %d, the log before it ends at %d", ErrCorrupt, what, c.parent, prev)
		}
		if err := fn(ver, c, parentCount); err != nil {
			return err
		}
		parentCount = c.pageCount
		prev = ver
	}
	if err := it.Error(); err != nil {
		return err
	}
	if prev != to {
		return fmt.Errorf("%w: commit records of volume %d end at %d, head is %d", ErrCorrupt, id, prev, to)
	}
	return nil
}

// noParentCount marks a parent page count forCommits does not know.
const noParentCount = ^uint32(0)

// firstCommit returns the oldest version of volume id whose commit record
// is kept; ok is false if there is none.
func (e *Engine) firstCommit(id VolumeID) (Version, bool, error) {
	it, err := e.newIter(&pebble.IterOptions{LowerBound: commitKey(id, 0), UpperBound: commitKey(id+1, 0)})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, false, it.Error()
	}
	if len(it.Key()) != 17 {
		return 0, false, fmt.Errorf("%w: commit key %x of volume %d", ErrCorrupt, it.Key(), id)
	}
	return Version(beUint64(it.Key()[9:17])), true, nil
}

// historyStart returns the oldest version whose commit record volume id
// keeps, or 1.
func (e *Engine) historyStart(id VolumeID) (Version, error) {
	first, ok, err := e.firstCommit(id)
	if err != nil || !ok {
		return 1, err
	}
	return first, nil
}

// takeWriter takes the volume's writer, which a write transaction holds
// while open and a pull or a reset while it moves the head; it reports
// false if another holds it.
func (v *Volume) takeWriter() bool {
	if !v.writer.TryLock() {
		return false
	}
	if ok, err := v.e.writeLocks.lock(v.name); !ok || err != nil {
		// Another process's transaction (writelock.go); an error
		// locking is as good as a busy lock: the caller may retry.
		v.writer.Unlock()
		return false
	}
	v.writing.Store(true)
	return true
}

func (v *Volume) releaseWriter() {
	v.writing.Store(false)
	v.e.writeLocks.unlock(v.name)
	v.writer.Unlock()
}

// takeWriterHeld takes the writer for a transaction of a joined process
// that holds the volume's write lock in cambium.writers itself.
func (v *Volume) takeWriterHeld() bool {
	if !v.writer.TryLock() {
		return false
	}
	v.writing.Store(true)
	return true
}

// successorLocked returns the state of version, which follows base (a
// commit or a pull) or precedes it (a reset): base's truncations that the
// pruner has not applied and that version includes, and version's own if it
// shrinks the volume. The caller holds v.mu.
func (v *Volume) successorLocked(base *state, version Version, pageCount, pageSize uint32) *state {
	next := &state{version: version, pageCount: pageCount, pageSize: pageSize}
	for _, sh := range base.shrinks {
		if sh.version <= version && sh.version > v.mu.prunedThrough {
			next.shrinks = append(next.shrinks, sh)
		}
	}
	if version > base.version && pageCount < base.pageCount {
		next.shrinks = append(next.shrinks, shrink{version: version, pageCount: pageCount})
	}
	return next
}

// Snapshot pins and returns the newest version. Release it when done.
// In a process that shares the directory, a snapshot it could not pin
// (the owner went away, and taking over failed) reads as that error: Pin
// says so up front.
func (v *Volume) Snapshot() *Snapshot {
	if v.cv != nil {
		s, err := v.Pin()
		if err != nil {
			return &Snapshot{v: v, st: &state{}, err: err}
		}
		return s
	}
	v.mu.Lock()
	st := v.head.Load()
	v.mu.pins[st.version]++
	v.mu.Unlock()
	return &Snapshot{v: v, st: st}
}

// Pin is Snapshot, with the error a process that shares the directory
// may meet.
func (v *Volume) Pin() (*Snapshot, error) {
	if v.cv != nil {
		return v.cv.snapshot()
	}
	return v.Snapshot(), nil
}

// pinLocked pins st for a snapshot. The caller holds v.mu.
func (v *Volume) pinLocked(st *state) *Snapshot {
	v.mu.pins[st.version]++
	return &Snapshot{v: v, st: st}
}

func (v *Volume) unpin(ver Version) {
	v.mu.Lock()
	n := v.mu.pins[ver] - 1
	if n <= 0 {
		delete(v.mu.pins, ver)
	} else {
		v.mu.pins[ver] = n
	}
	// Only the release of the oldest pinned version can let the pruner go
	// further; commits wake it for the rest.
	oldest := n <= 0 && ver < v.head.Load().version && v.pruneBehindLocked() >= pruneMinCommits
	for p := range v.mu.pins {
		oldest = oldest && p > ver
	}
	v.mu.Unlock()
	if oldest {
		v.e.kickPruner()
	}
}

// pruneBehindLocked returns how many versions the newest is past the one
// the pruner is done through. The pruner takes no step for fewer than
// pruneMinCommits, so there is no point waking it (a goroutine switch, and
// often a switch between OS threads) before then.
func (v *Volume) pruneBehindLocked() Version {
	head := v.head.Load().version
	if head < v.mu.prunedThrough {
		return 0
	}
	return head - v.mu.prunedThrough
}

// pruneDueLocked reports whether a commit should wake the pruner: when it
// may have a step to take, and while it has not taken it (an old pinned
// snapshot holds it back; its release wakes it), again every
// pruneKickEvery commits rather than at each.
func (v *Volume) pruneDueLocked() bool {
	n := v.pruneBehindLocked()
	return n >= pruneMinCommits && (n-pruneMinCommits)%pruneKickEvery == 0
}

// pruneKickEvery is how often commits wake a pruner that has work but has
// not taken it.
const pruneKickEvery = 16

// Snapshot is an immutable view of one version of a volume. Its methods are
// safe for concurrent use until Release.
type Snapshot struct {
	v        *Volume
	st       *state
	rem      *remoteView // for a past version read from the remote (SnapshotAt)
	cp       *clientPin  // the owner's snapshot, in a process that joined it
	err      error       // why a client's snapshot could not be pinned
	released atomic.Bool
}

// Version returns the snapshot's version.
func (s *Snapshot) Version() Version { return s.st.version }

// PageCount returns the number of pages at the snapshot's version.
func (s *Snapshot) PageCount() uint32 { return s.st.pageCount }

// PageSize returns the volume's page size, or 0 for an empty volume that
// was never committed to.
func (s *Snapshot) PageSize() int { return int(s.st.pageSize) }

// Volume returns the snapshot's volume.
func (s *Snapshot) Volume() *Volume { return s.v }

// Release unpins the snapshot; it must not be used afterwards. Releasing
// twice is harmless.
func (s *Snapshot) Release() {
	if !s.released.CompareAndSwap(false, true) || s.rem != nil || s.err != nil {
		return
	}
	if s.cp != nil {
		s.cp.unref()
		return
	}
	s.v.unpin(s.st.version)
}

// ReadPage appends the image of page p at the snapshot's version to dst: the
// newest image written at or before it, or zeros if there is none. p must
// be within the page count.
func (s *Snapshot) ReadPage(p PageNo, dst []byte) ([]byte, error) {
	if s.released.Load() {
		return nil, fmt.Errorf("read page %d of %q: snapshot released", p, s.v.name)
	}
	if s.err != nil {
		return nil, fmt.Errorf("read page %d of %q: %w", p, s.v.name, s.err)
	}
	if p == 0 || uint32(p) > s.st.pageCount {
		return nil, fmt.Errorf("read page %d of %q: version %d has pages 1..%d", p, s.v.name, s.st.version, s.st.pageCount)
	}
	if s.rem != nil {
		return s.readRemote(p, dst)
	}
	if s.cp != nil {
		return s.v.cv.readPage(s, p, dst)
	}
	return s.v.readPage(s.st, p, dst)
}

// readPage reads page p as of st: the cache, else one Pebble seek.
func (v *Volume) readPage(st *state, p PageNo, dst []byte) ([]byte, error) {
	v.stats.pageReads.Add(1)
	id := VolumeID(v.id.Load())
	if b := v.e.budget; b != nil {
		b.touch(id, p)
	}
	if out, ok := v.e.cache.get(v, p, st.version, dst); ok {
		v.stats.cacheHits.Add(1)
		// A scan reading what was fetched ahead into the cache alone
		// (aheadInMemory) starts the next prefetch as from disk.
		v.noteRead(p)
		return out, nil
	}
	if id == 0 {
		return appendZeros(dst, int(st.pageSize)), nil
	}
	u, val, found, err := v.lookupPage(id, p, st.version)
	if err != nil {
		return nil, err
	}
	if !found || st.cutOff(p, u, st.version) {
		return appendZeros(dst, int(st.pageSize)), nil
	}
	pv, err := decodePageValue(pageAt{v.name, p, u}, val, int(st.pageSize))
	if err != nil {
		return nil, err
	}
	var img []byte
	switch pv.kind {
	case pageImage:
		img = pv.image
		v.noteRead(p)
	case pageZero:
		img = make([]byte, st.pageSize)
	case pageStub:
		v.stats.remoteReads.Add(1)
		if img, err = v.pageFromFrame(pv.stub, p, st.version, int(st.pageSize)); errors.Is(err, remote.ErrNotFound) {
			img, err = v.resolveCollected(pv.stub, p, u, st.version, int(st.pageSize), err)
		}
		if err != nil {
			return nil, err
		}
		img = bytes.Clone(img)
	}
	v.e.cache.insert(v, p, u, st.version, img)
	return append(dst, img...), nil
}

// lookupPage returns a copy of the newest value of page p written at or
// before version ver, and the version it was written at.
func (v *Volume) lookupPage(id VolumeID, p PageNo, ver Version) (Version, []byte, bool, error) {
	it, err := v.e.newIter(&pebble.IterOptions{
		LowerBound: pageKey(id, p, ver),
		UpperBound: pagePrefixEnd(id, p),
	})
	if err != nil {
		return 0, nil, false, v.e.readError(fmt.Sprintf("read page %d of %q", p, v.name), err)
	}
	defer it.Close()
	if !it.First() {
		if err := it.Error(); err != nil {
			return 0, nil, false, v.e.readError(fmt.Sprintf("read page %d of %q", p, v.name), err)
		}
		return 0, nil, false, nil
	}
	_, _, u, _ := decodePageKey(it.Key())
	return u, bytes.Clone(it.Value()), true, nil
}

func appendZeros(dst []byte, n int) []byte {
	return append(dst, make([]byte, n)...)
}

func beUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}
