package engine

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cambiumdb/cambium/segment"
	"github.com/cockroachdb/pebble/v2"
)

// Txn is a volume's write transaction: pages and truncations staged on top
// of a base snapshot, committed as one new version or none. One goroutine
// uses a Txn; while it is open, no other write transaction can begin on
// the volume.
type Txn struct {
	v       *Volume
	base    *state
	version Version // the version a commit makes: base.version + 1

	pageSize  uint32
	pageCount uint32
	// minCount is the smallest page count the transaction truncated to:
	// pages above it that the transaction did not write read as zeros.
	minCount uint32

	staged      map[PageNo][]byte // page images held in memory
	stagedBytes int64
	// spilled holds the pages whose images at version are in Pebble and
	// current; spilledAll every page ever spilled, whose keys a rollback
	// (or, after a crash, the next Open) must delete.
	spilled    *roaring.Bitmap
	spilledAll *roaring.Bitmap
	done       bool
	// ct is set in a process that joined another's data directory: the
	// transaction is the owner's (see client.go).
	ct *clientTxn
	// compared says, in the owner, that the joined process whose
	// transaction this is left out the pages equal to the base: Commit
	// does not read the base to compare them again.
	compared bool
}

// Begin opens the volume's write transaction on base, which must be the
// newest version (else ErrSnapshotStale) and stays the caller's to
// release. It returns ErrBusy while another write transaction is open.
func (v *Volume) Begin(base *Snapshot) (*Txn, error) {
	if v.cv != nil {
		if base.cp == nil { // this process took the directory over
			lv, _, err := v.cv.local()
			if err != nil || lv == nil {
				return nil, fmt.Errorf("begin write on %q: %w", v.name, ErrOwnerLost)
			}
			return lv.Begin(base)
		}
		return v.cv.begin(base)
	}
	return v.begin(base, v.takeWriter)
}

// begin is Begin, with the writer taken by take: takeWriter, or for a
// joined process that holds the volume's write lock across processes
// itself (writelock.go), takeWriterHeld.
func (v *Volume) begin(base *Snapshot, take func() bool) (*Txn, error) {
	if base.v != v {
		return nil, fmt.Errorf("begin on %q with a snapshot of %q", v.name, base.v.name)
	}
	if err := v.e.writable(); err != nil {
		return nil, fmt.Errorf("begin write on %q: %w", v.name, err)
	}
	if rec := v.replState.Load(); rec.diverged {
		return nil, fmt.Errorf("begin write on %w", v.divergedError(rec.pushed))
	}
	if !take() {
		return nil, fmt.Errorf("begin write on %q: %w", v.name, ErrBusy)
	}
	if head := v.head.Load(); head.version != base.st.version {
		v.releaseWriter()
		return nil, fmt.Errorf("begin write on %q at version %d, newest is %d: %w", v.name, base.st.version, head.version, ErrSnapshotStale)
	}
	st := base.st
	return &Txn{
		v:          v,
		base:       st,
		version:    st.version + 1,
		pageSize:   st.pageSize,
		pageCount:  st.pageCount,
		minCount:   st.pageCount,
		staged:     map[PageNo][]byte{},
		spilled:    roaring.New(),
		spilledAll: roaring.New(),
	}, nil
}

// PageCount returns the page count the transaction would commit.
func (t *Txn) PageCount() uint32 { return t.pageCount }

// PageSize returns the page size, 0 if not yet known (an empty volume whose
// first page is not yet written).
func (t *Txn) PageSize() int { return int(t.pageSize) }

// Base returns the version the transaction started from.
func (t *Txn) Base() Version { return t.base.version }

// WritePage stages the image of page p; data is copied. The first page
// written to a volume without pages sets its page size.
func (t *Txn) WritePage(p PageNo, data []byte) error {
	if t.done {
		return ErrTxnDone
	}
	if p == 0 {
		return fmt.Errorf("write page 0 of %q: pages are numbered from 1", t.v.name)
	}
	// A volume's page size is set by its first page, and changed only by
	// SetPageSize, which rewrites every page: images of another size
	// could otherwise resurface as corrupt.
	if t.base.pageSize == 0 && len(t.staged) == 0 && t.spilledAll.IsEmpty() && (t.ct == nil || t.ct.sent.IsEmpty()) {
		if !segment.ValidPageSize(len(data)) {
			return fmt.Errorf("write page %d of %q: %w: %d is not a power of two in 512..65536", p, t.v.name, ErrPageSize, len(data))
		}
		t.pageSize = uint32(len(data))
	}
	if len(data) != int(t.pageSize) {
		return fmt.Errorf("write page %d of %q: %w: %d bytes, the volume's pages are %d", p, t.v.name, ErrPageSize, len(data), t.pageSize)
	}
	if old, ok := t.staged[p]; ok {
		copy(old, data)
	} else {
		buf := pageBufs.get(len(data))
		copy(buf, data)
		t.staged[p] = buf
		t.stagedBytes += int64(len(data))
	}
	if uint32(p) > t.pageCount {
		t.pageCount = uint32(p)
	}
	if t.ct != nil {
		if t.stagedBytes > min(stageLimit, t.v.e.opts.SpillBytes) {
			return t.stageRemote(0)
		}
		return nil
	}
	if t.stagedBytes > t.v.e.opts.SpillBytes {
		return t.spill()
	}
	return nil
}

// Truncate sets the page count to n, dropping pages above it.
func (t *Txn) Truncate(n uint32) error {
	if t.ct != nil && !t.done {
		return t.truncateRemote(n)
	}
	if t.done {
		return ErrTxnDone
	}
	for p, data := range t.staged {
		if uint32(p) > n {
			delete(t.staged, p)
			t.stagedBytes -= int64(len(data))
			pageBufs.put(data)
		}
	}
	if n < ^uint32(0) {
		t.spilled.RemoveRange(uint64(n)+1, 1<<32)
	}
	t.pageCount = n
	t.minCount = min(t.minCount, n)
	return nil
}

// SetPageSize makes the transaction a rewrite of the volume at pages of
// size bytes: the first length bytes of its view (the pages it wrote, the
// base's for the rest) cut into pages of the new size, every one of them
// staged. This is how SQLite's VACUUM changes the page size: it writes the
// database at the new size through pages of the old, then truncates it to
// length. The version the commit makes has the new size and rewrites every
// page (its commit's changeset is 1..length/size), so that no image of the
// old size is ever read at it or after it, while older snapshots keep
// reading theirs. length must be a whole number of new pages and no more
// than the transaction's view holds.
func (t *Txn) SetPageSize(size int, length int64) error {
	if t.done {
		return ErrTxnDone
	}
	old := int64(t.pageSize)
	switch {
	case !segment.ValidPageSize(size):
		return fmt.Errorf("change the page size of %q: %w: %d is not a power of two in 512..65536", t.v.name, ErrPageSize, size)
	case old == 0:
		return fmt.Errorf("change the page size of %q: %w: the volume has no pages yet", t.v.name, ErrPageSize)
	case length < 0 || length%int64(size) != 0 || length > int64(t.pageCount)*old || length/int64(size) > int64(^uint32(0)):
		return fmt.Errorf("change the page size of %q to %d: %w: %d bytes are not whole pages of the %d the transaction holds", t.v.name, size, ErrPageSize, length, int64(t.pageCount)*old)
	}
	if int64(size) == old {
		return t.Truncate(uint32(length / old))
	}
	if t.ct != nil {
		return t.setPageSizeRemote(size, length)
	}
	// Every image of the new size is built in memory before the old ones
	// go: the transaction's spilled images share the keys of the new
	// pages. VACUUM holds the whole database in its temporary database
	// anyway.
	pages := make(map[PageNo][]byte, length/int64(size))
	chunk := min(old, int64(size)) // a new page's share of an old one, or the reverse
	var buf []byte
	for at := int64(0); at < length; at += chunk {
		if at%old == 0 {
			var err error
			if buf, err = t.ReadPage(PageNo(at/old+1), buf[:0]); err != nil {
				return fmt.Errorf("change the page size of %q: %w", t.v.name, err)
			}
		}
		q := PageNo(at/int64(size) + 1)
		img, ok := pages[q]
		if !ok {
			img = pageBufs.get(size)
			pages[q] = img
		}
		copy(img[at%int64(size):][:chunk], buf[at%old:][:chunk])
	}
	t.dropStaged()
	t.staged, t.stagedBytes = pages, length
	// The images this transaction spilled are of the old size: the commit
	// deletes them (they stay in spilledAll) unless new images replace
	// them.
	t.spilled.Clear()
	t.pageSize, t.pageCount, t.minCount = uint32(size), uint32(length/int64(size)), 0
	if t.stagedBytes > t.v.e.opts.SpillBytes {
		return t.spill()
	}
	return nil
}

// ReadPage appends the transaction's view of page p to dst: its own write
// if any, else the base snapshot's image.
func (t *Txn) ReadPage(p PageNo, dst []byte) ([]byte, error) {
	if t.done {
		return nil, ErrTxnDone
	}
	if p == 0 || uint32(p) > t.pageCount {
		return nil, fmt.Errorf("read page %d of %q: the transaction has pages 1..%d", p, t.v.name, t.pageCount)
	}
	if data, ok := t.staged[p]; ok {
		t.v.stats.pageReads.Add(1)
		return append(dst, data...), nil
	}
	if t.ct != nil {
		return t.readPageRemote(p, dst)
	}
	if t.spilled.Contains(uint32(p)) {
		t.v.stats.pageReads.Add(1)
		val, found, err := t.v.e.get(pageKey(VolumeID(t.v.id.Load()), p, t.version))
		if err != nil || !found {
			return nil, fmt.Errorf("%w: spilled page %d of %q: found %v, %d bytes, %v", ErrCorrupt, p, t.v.name, found, len(val), err)
		}
		pv, err := decodePageValue(pageAt{t.v.name, p, t.version}, val, int(t.pageSize))
		if err == nil && pv.kind != pageImage {
			err = fmt.Errorf("%w: %s: a value of kind %d, want an image", ErrCorrupt, pageAt{t.v.name, p, t.version}, pv.kind)
		}
		if err != nil {
			return nil, fmt.Errorf("read spilled page: %w", err)
		}
		return append(dst, pv.image...), nil
	}
	if uint32(p) > t.minCount {
		return appendZeros(dst, int(t.pageSize)), nil
	}
	return t.v.readPage(t.base, p, dst)
}

// spill writes the staged pages to Pebble under their final keys, where no
// snapshot can see them until the commit publishes their version.
func (t *Txn) spill() error {
	b := t.v.e.db.NewBatch()
	defer b.Close()
	id, unlock, err := t.v.assignID(b)
	if err != nil {
		return err
	}
	defer unlock()
	val := make([]byte, imageValueLen(int(t.pageSize)))
	for p, data := range t.staged {
		encodeImage(val, data)
		if err := b.Set(pageKey(id, p, t.version), val, nil); err != nil {
			return err
		}
		t.spilled.Add(uint32(p))
		t.spilledAll.Add(uint32(p))
	}
	rec, err := spillRecord{version: t.version, pages: t.spilledAll}.encode()
	if err != nil {
		return err
	}
	if err := b.Set(spillKey(id), rec, nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return t.v.e.fail(fmt.Errorf("spill write transaction of %q: %w", t.v.name, err))
	}
	t.v.id.Store(uint64(id))
	t.dropStaged()
	return nil
}

// dropStaged forgets every staged image and recycles its buffer.
func (t *Txn) dropStaged() {
	for _, data := range t.staged {
		pageBufs.put(data)
	}
	clear(t.staged)
	t.stagedBytes = 0
}

// assignID returns the volume's ID, and for a volume not yet stored
// assigns one and adds its volume and head records to b. Until unlock is
// called, no other volume can be assigned an ID, so the caller must apply
// b (or give up) before calling unlock.
func (v *Volume) assignID(b *pebble.Batch) (VolumeID, func(), error) {
	if id := VolumeID(v.id.Load()); id != 0 {
		return id, func() {}, nil
	}
	e := v.e
	e.idMu.Lock()
	id, err := e.assignVolumeIDLocked(b)
	if err == nil {
		err = b.Set(volumeKey(v.name), volumeRecord{id: id, created: time.Now()}.encode(), nil)
	}
	if err == nil {
		err = b.Set(headKey(id), headRecord{}.encode(), nil)
	}
	if err != nil {
		e.idMu.Unlock()
		return 0, nil, fmt.Errorf("store volume %q: %w", v.name, err)
	}
	return id, e.idMu.Unlock, nil
}

// Commit makes the transaction's changes the volume's next version, in one
// Pebble batch written with durability d, and returns a pinned snapshot of
// the new newest version (the caller releases it). A transaction that
// changed nothing commits no version and returns a snapshot of its base.
// After an error the transaction stays open for Rollback.
//
// The steps, which a pull takes too (applyPulled): the writer is held
// (Begin took it); the batch holds the pages, the commit record and the
// new head; logHeadMove logs it, and applies it or leaves it to the
// commit log to apply; the page cache is brought up
// to date; publish makes the new state, made by successorLocked, the one
// snapshots pin. A reset (discardUnpushed) takes the same steps but
// publishes before it applies its batch, and says why.
func (t *Txn) Commit(d Durability) (*Snapshot, error) {
	if t.done {
		return nil, ErrTxnDone
	}
	if t.ct != nil {
		return t.commitRemote(d)
	}
	v := t.v
	if err := v.e.writable(); err != nil {
		return nil, fmt.Errorf("commit %q: %w", v.name, err)
	}
	t.stageRegrown()
	if t.compared {
		// A joined process compared its pages with its cache of the
		// base; the pages it could not compare are stored as they are.
	} else if err := t.dropUnchanged(); err != nil {
		return nil, err
	}
	if len(t.staged) == 0 && t.spilled.IsEmpty() && t.pageCount == t.base.pageCount {
		return t.commitNothing()
	}

	b := v.e.db.NewBatchWithSize(len(t.staged)*(pageKeyLen+int(t.pageSize)+16) + 256)
	owned := true // b is ours to close, until the commit log takes it
	defer func() {
		if owned {
			b.Close()
		}
	}()
	// A volume's first commit assigns its ID, which the next volume's
	// first commit reads from Pebble: it is applied before it returns.
	stored := v.id.Load() != 0
	id, unlock, err := v.assignID(b)
	if err != nil {
		return nil, err
	}
	defer unlock()
	pages, changeset, err := t.batchPages(b, id)
	if err != nil {
		return nil, err
	}
	if err := t.batchRecords(b, id, changeset); err != nil {
		return nil, err
	}
	// The log would not hold the pages a transaction spilled earlier: those
	// commits go to Pebble's tables.
	mode := logDeferred
	switch {
	case !t.spilledAll.IsEmpty():
		mode = logFlushed
	case !stored:
		mode = logApplied
	}
	owned = mode != logDeferred
	if err := v.logHeadMove(b, id, t.base.version, t.version, d == Durable, mode); err != nil {
		return nil, v.e.fail(fmt.Errorf("commit version %d of %q: %w", t.version, v.name, err))
	}
	if v.e.budget != nil {
		v.e.budget.add(int64(changeset.GetCardinality()) * int64(t.pageSize))
	}
	superseded := t.updateCache(pages)
	shrink := int64(-1)
	if t.minCount < t.base.pageCount {
		shrink = int64(t.minCount)
	}
	snap := t.publish(superseded, change{version: t.version, pages: changeset, shrink: shrink})
	v.stats.commits.Add(1)
	t.staged = nil
	t.finish()
	return snap, nil
}

// stageRegrown stages zeros for the pages the transaction cut off and grew
// back without writing: they are zeros now, and committing them as images
// keeps a commit fully described by its page count and its changeset.
func (t *Txn) stageRegrown() {
	for p := t.minCount + 1; p <= min(t.base.pageCount, t.pageCount) && p > t.minCount; p++ {
		if _, ok := t.staged[PageNo(p)]; !ok && !t.spilled.Contains(p) {
			t.staged[PageNo(p)] = make([]byte, t.pageSize)
		}
	}
}

// commitNothing ends a transaction that changed nothing and returns a
// snapshot of the newest version.
func (t *Txn) commitNothing() (*Snapshot, error) {
	if err := t.discardSpilled(); err != nil {
		return nil, err
	}
	t.finish()
	v := t.v
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pinLocked(v.head.Load()), nil
}

// batchPages adds to b the staged images, in page order, and the deletion
// of the spilled images that no longer belong to the commit, and returns
// the staged pages in order and the commit's changeset.
func (t *Txn) batchPages(b *pebble.Batch, id VolumeID) ([]PageNo, *roaring.Bitmap, error) {
	changeset := roaring.New()
	pages := slices.Sorted(maps.Keys(t.staged))
	for _, p := range pages {
		// Straight into the batch: no intermediate copy of the image.
		op := b.SetDeferred(pageKeyLen, imageValueLen(int(t.pageSize)))
		appendPageKey(op.Key[:0], id, p, t.version)
		encodeImage(op.Value, t.staged[p])
		if err := op.Finish(); err != nil {
			return nil, nil, err
		}
		changeset.Add(uint32(p))
	}
	if !t.spilledAll.IsEmpty() {
		// Spilled pages that were truncated away and not written again.
		for p := range roaring.Values(t.spilledAll) {
			if _, staged := t.staged[PageNo(p)]; !staged && !t.spilled.Contains(p) {
				if err := b.Delete(pageKey(id, PageNo(p), t.version), nil); err != nil {
					return nil, nil, err
				}
			}
		}
		changeset.Or(t.spilled)
		// The spill record must not outlive the commit (the next Open
		// would delete the commit's pages). Only a transaction that
		// spilled can have one: a rollback that fails to delete its
		// record stops the engine's writes, and Open deletes the records
		// a crash left.
		if err := b.Delete(spillKey(id), nil); err != nil {
			return nil, nil, err
		}
	}
	changeset.RunOptimize()
	return pages, changeset, nil
}

// batchRecords adds to b the commit record and the new head record.
func (t *Txn) batchRecords(b *pebble.Batch, id VolumeID, changeset *roaring.Bitmap) error {
	rec, err := commitRecord{
		parent:    t.base.version,
		pageCount: t.pageCount,
		pageSize:  t.pageSize,
		time:      time.Now(),
		changeset: changeset,
	}.encode()
	if err != nil {
		return err
	}
	if err := b.Set(commitKey(id, t.version), rec, nil); err != nil {
		return err
	}
	head := headRecord{version: t.version, pageCount: t.pageCount, pageSize: t.pageSize}
	return b.Set(headKey(id), head.encode(), nil)
}

// updateCache makes the page cache right for the new version before anyone
// can pin it, and returns what each page's image supersedes, for the
// pruner: the cache knows it for the pages the transaction read; a page
// beyond the base's count had none left.
func (t *Txn) updateCache(pages []PageNo) []supersession {
	v := t.v
	if t.pageCount < t.base.pageCount {
		v.cacheGen.Add(1)
	}
	superseded := make([]supersession, 0, len(pages)+int(t.spilled.GetCardinality()))
	for _, p := range pages {
		prev := v.e.cache.replace(v, p, t.version, t.staged[p])
		if uint32(p) > t.base.pageCount {
			prev = supersededNone
		}
		superseded = append(superseded, supersession{version: t.version, page: p, prev: prev})
	}
	for p := range roaring.Values(t.spilled) {
		v.e.cache.remove(v, PageNo(p))
		if _, staged := t.staged[PageNo(p)]; !staged {
			superseded = append(superseded, supersession{version: t.version, page: PageNo(p)})
		}
	}
	return superseded
}

// publish makes the committed version the head and returns a snapshot of
// it, pinned before any other reader can see it; it wakes the pruner when
// due.
func (t *Txn) publish(superseded []supersession, moved change) *Snapshot {
	v := t.v
	v.mu.Lock()
	next := v.successorLocked(t.base, t.version, t.pageCount, t.pageSize)
	v.head.Store(next)
	v.movedLocked(moved)
	v.noteSupersededLocked(t.version, superseded)
	snap := v.pinLocked(next)
	prune := v.pruneDueLocked()
	v.mu.Unlock()
	if prune {
		v.e.kickPruner()
	}
	return snap
}

// logMode says how logHeadMove puts a batch in the store.
type logMode int

const (
	// logApplied logs the batch and applies it to Pebble before
	// returning.
	logApplied logMode = iota
	// logDeferred logs the batch and leaves it to the commit log to
	// apply, which takes it (and closes it): Pebble reads settle first
	// (Engine.settle), and the page cache has the pages meanwhile. A
	// commit's memtable insert is then off the commit's path.
	logDeferred
	// logFlushed applies the batch and flushes it to Pebble's tables,
	// without logging it.
	logFlushed
)

// logHeadMove logs and applies batch b, which moves volume id's head from
// version parent to version, once the page cache knows a commit has begun.
// With sync the log is on stable storage first; mode says whether b is
// applied now, later, or flushed instead of logged. After an error the
// store's state is unknown (Pebble may have applied a batch whose log
// entry it failed to sync): the caller stops the engine's writes. Commits
// and pulls take this step.
func (v *Volume) logHeadMove(b *pebble.Batch, id VolumeID, parent, version Version, sync bool, mode logMode) error {
	v.committing.Store(uint64(version))
	var err error
	switch mode {
	case logFlushed:
		err = v.e.clog.WriteFlushed(b)
	case logDeferred:
		err = v.e.clog.WriteDeferred(b, logEntry(id, version, parent), sync)
	default:
		err = v.e.clog.Write(b, logEntry(id, version, parent), sync)
	}
	if err != nil {
		v.committing.Store(uint64(parent))
		return err
	}
	v.id.Store(uint64(id))
	return nil
}

// dropUnchanged removes staged pages whose image equals the base's, so
// that a rolled-back SQLite transaction (which writes the old pages back)
// commits nothing. A page restored after it spilled leaves the spilled set
// too: its spilled image, at the commit's version, is deleted by the
// commit (it stays in spilledAll), never published. A restored image that
// spilled in turn is committed as is (the base's bytes again): finding it
// would mean reading every spilled page back.
func (t *Txn) dropUnchanged() error {
	var buf []byte
	for p, data := range t.staged {
		if uint32(p) > t.minCount || uint32(p) > t.base.pageCount || t.pageSize != t.base.pageSize {
			continue
		}
		same, cached := t.v.e.cache.equal(t.v, p, t.base.version, data)
		if !cached {
			var err error
			buf, err = t.v.readPage(t.base, p, buf[:0])
			if err != nil {
				return err
			}
			same = bytes.Equal(buf, data)
		}
		if same {
			delete(t.staged, p)
			t.stagedBytes -= int64(len(data))
			t.spilled.Remove(uint32(p))
			pageBufs.put(data)
		}
	}
	return nil
}

// Dirty reports whether the transaction wrote or truncated anything since
// it began (or since Discard), even if what it wrote equals its base.
func (t *Txn) Dirty() bool {
	if t.ct != nil {
		return len(t.staged) > 0 || !t.ct.sent.IsEmpty() || t.pageCount != t.base.pageCount || t.pageSize != t.base.pageSize
	}
	return len(t.staged) > 0 || !t.spilledAll.IsEmpty() || t.pageCount != t.base.pageCount || t.pageSize != t.base.pageSize
}

// Rollback discards the transaction. It is harmless after Commit.
func (t *Txn) Rollback() error {
	if t.done {
		return nil
	}
	if t.ct != nil {
		t.rollbackRemote()
		return nil
	}
	err := t.discardSpilled()
	t.dropStaged()
	t.finish()
	return err
}

// Discard drops every staged change but keeps the transaction, and with
// it the volume's write lock, open.
func (t *Txn) Discard() error {
	if t.done {
		return ErrTxnDone
	}
	if t.ct != nil {
		return t.discardRemote()
	}
	t.dropStaged()
	t.pageSize, t.pageCount, t.minCount = t.base.pageSize, t.base.pageCount, t.base.pageCount
	return t.discardSpilled()
}

func (t *Txn) discardSpilled() error {
	if t.spilledAll.IsEmpty() {
		return nil
	}
	id := VolumeID(t.v.id.Load())
	b := t.v.e.db.NewBatch()
	defer b.Close()
	for p := range roaring.Values(t.spilledAll) {
		if err := b.Delete(pageKey(id, PageNo(p), t.version), nil); err != nil {
			return err
		}
	}
	if err := b.Delete(spillKey(id), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		// The spill record stays; the next Open deletes the pages.
		return t.v.e.fail(fmt.Errorf("discard spilled pages of %q: %w", t.v.name, err))
	}
	t.spilled.Clear()
	t.spilledAll.Clear()
	return nil
}

func (t *Txn) finish() {
	t.done = true
	t.v.releaseWriter()
}
