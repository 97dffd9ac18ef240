package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
)

// The disk budget (Options.CacheBudget) bounds the disk of the data
// directory's page images and of the metadata the budget keeps with them
// (stubs and location records), every volume together. Past it, images
// that are safe in the remote go back to stubs, least recently read
// first, and are fetched again when read.
//
// Safe in the remote means that a location record says where: push
// writes one for each image it uploaded (once the remote commit is
// claimed), and a fetch for each image it stored (the frame it came
// from). An image without one (committed and not pushed yet, or pushed
// by a push that a crash interrupted and a restart finished) is never
// evicted. A location record has a page key's layout under its own tag,
// and the value a stub would have (pagevalue.go):
//
//	0x0A | volume ID (8) | page (4) | ^version (8)   stub value (53 bytes)
//
// Evicting the image of page p written at version u writes that stub
// under (p, u) and deletes the location record, in one batch. The stub
// reads like a pulled one: a read fetches its frame, and when the frame's
// segment has been collected since, the read goes through the remote's
// kept maps (resolveCollected). Snapshots of older versions read (p, u)
// the same way; the pruner, which deletes images no snapshot can see,
// deletes their location records with them, and it and the evictor never
// write at the same time (Engine.evictMu): an eviction must not bring
// back as a stub an image the pruner has just deleted.
//
// Accounting: the count of image bytes is kept in memory, exactly while
// the engine runs (a commit adds its images, a fetch the images it
// stores; an eviction, the pruner and a reset subtract what they delete,
// reading the kinds of the values they delete), and so are the counts of
// stubs (and zero pages) and of location records (a pull adds its stubs,
// an eviction turns images into stubs and deletes location records, a
// fetch the reverse, a push adds location records, the pruner subtracts
// what it deletes). The metadata's disk is estimated from its counts
// (stubDiskBytes, locationDiskBytes, measured): the budget bounds images
// plus metadata, so that the directory stays about the budget however
// many pages its volumes have that it does not cache. The counts are not
// persisted: Open takes a Pebble snapshot and counts under it in the
// background, a scan of the page keys and location records proportional
// to what the directory stores; the evictor starts once that count is in.
//
// Recency is approximate, a clock with second chances: every read of a
// page (from the page cache or from disk) sets an access bit for it, in a
// bitmap hashed by volume and page (sized to the budget's pages; pages
// that share a bit share their chances). The evictor's hand walks the
// location records in key order, resuming where it stopped: a record
// whose page's bit is set loses the bit and is passed over, one whose bit
// is clear is evicted. So an image is evicted when it has not been read
// since the hand last passed it. A fetch sets the bits of the pages it
// stores, as a read would: pages fetched ahead of a scan must not be
// evicted before the scan reaches them. The evictor runs in the background, in
// batches of evictBatch records, when a commit or a fetch takes the count
// over the budget and every second meanwhile, until the count is under
// the budget by a sixteenth (so that it does not wake for every page).
// Readers and commits never wait for it. A stub written over an image
// frees no disk until Pebble rewrites the table holding the image, so
// each time a sixteenth of the budget was evicted, and once a pass evicts
// nothing more, the evictor has Pebble compact the ranges of page keys it
// evicted in meanwhile (each eviction batch's first to last evicted key,
// ranges of one volume close together merged; a manual compaction, in the
// background). Compacting only those ranges, not every page key its hand
// passed, keeps a scan under a small budget from rewriting the whole
// cache each time the hand goes round. The data directory then holds the
// budget at most, plus what was evicted since the last compaction (a
// sixteenth of the budget at most; none once the evictor is idle).
//
// Scans: what a scan fetches (the window a reader waits for, and the
// fetches ahead of it) is stored only while the budget has room for it;
// past that, its pages go to the memory page cache alone, where the scan
// reads them (fetch.go, aheadInMemory), so that a scan longer than the
// budget neither writes each image only to evict it nor evicts the pages
// read before it. One readahead plan fetches at most an eighth of the
// budget (readaheadShare).
//
// When what is left over the budget cannot be evicted (images not yet
// pushed, or read again since the hand's last pass) the evictor stops
// until a push or a fetch writes location records, or for stuckRetry;
// BudgetStats.OverBudget then says by how much the directory is over.

// tagLocation keys location records (see above).
const tagLocation byte = 0x0A

// locationKey is the key of the location record of page p's image written
// at version u.
func locationKey(id VolumeID, p PageNo, u Version) []byte {
	k := pageKey(id, p, u)
	k[0] = tagLocation
	return k
}

// evictBatch is how many location records one eviction batch walks.
const evictBatch = 1024

// compactEvery: the evictor has Pebble compact the key ranges of the
// images it evicted each time it evicted a compactEvery-th of the budget,
// so that evicted images hold at most that much disk. A compaction
// rewrites the tables of those ranges only, about what was evicted there,
// so compacting more often costs about the same in all.
const compactEvery = 16

// stubDiskBytes and locationDiskBytes are what a stub (or a zero page)
// and a location record take on disk, key included, once Pebble
// compressed their table blocks: estimates, a little over what
// StoreUsageOf measured (the budget workload, 1 GiB read through 64 MiB:
// 20.5 bytes a stub, 40 a location record). The budget counts them as
// its metadata: the directory, not the images alone, is to stay within
// the budget.
const (
	stubDiskBytes     = 24
	locationDiskBytes = 44
)

// evictInterval is how often the evictor looks at the count unkicked;
// stuckRetry is how long it waits, after going round with nothing it
// could evict, before it goes round again when no push or fetch made
// images evictable meanwhile (the images it passed over for being read
// may have gone cold).
const (
	evictInterval = time.Second
	stuckRetry    = 30 * time.Second
)

// BudgetStats describes the data directory's disk budget.
// Its fields are part of the JSON of PRAGMA cambium_stats and
// cambium_status, and of cambium info --json.
type BudgetStats struct {
	Budget int64 `json:"cache_budget"` // bytes of disk allowed; 0: unbounded
	// CachedBytes is the bytes of page images stored in the data
	// directory, every volume together (-1 until Open's count is in, and
	// when the directory has no budget: it is only counted with one).
	CachedBytes int64 `json:"cached_bytes"`
	// MetadataBytes estimates the disk that the stubs of pages not cached
	// and the location records of the cached ones take: the budget
	// bounds CachedBytes + MetadataBytes.
	MetadataBytes int64 `json:"metadata_bytes"`
	Evictions     int64 `json:"evictions"`     // images evicted back to stubs by this process
	EvictedBytes  int64 `json:"evicted_bytes"` // their bytes
	// UncompactedBytes is the bytes of images evicted whose disk Pebble
	// has not freed yet: the evictor has it compact their tables each
	// sixteenth of the budget, and once it is idle.
	UncompactedBytes int64 `json:"evicted_uncompacted_bytes"`
	// OverBudget is how far CachedBytes + MetadataBytes is over the
	// budget when the evictor found nothing more it may evict: images not
	// pushed yet (and older images that pinned snapshots read, until the
	// pruner deletes them).
	OverBudget int64 `json:"over_budget_bytes"`
	// PageReads and RemoteReads sum Stats.PageReads and RemoteReads over
	// the volumes open in this process; HitRate is the part of the reads
	// served locally (1 with no reads).
	PageReads   int64   `json:"page_reads"`
	RemoteReads int64   `json:"remote_reads"`
	HitRate     float64 `json:"hit_rate"`
}

// budget keeps the data directory's page images within Options.CacheBudget.
type budget struct {
	e     *Engine
	limit int64

	images  atomic.Int64 // bytes of images stored, counted so far
	counted atomic.Bool  // Open's count is in images, stubs and locs
	// stubs and locs count the stubs (and zero pages) and the location
	// records stored, as images counts the images: their disk is the
	// budget's metadata (meta).
	stubs, locs atomic.Int64
	// evictions and evicted count what the evictor did; stuck is set
	// when it last stopped over the budget with nothing it could evict.
	evictions atomic.Int64
	evicted   atomic.Int64
	stuck     atomic.Bool
	// locations counts the location records written; stuckAt is its
	// value when the evictor got stuck (only the evictor uses it): until
	// it changes, no image became evictable.
	locations  atomic.Int64
	stuckAt    int64
	stuckSince time.Time
	// passes counts the evictor's passes (tests wait for one to end).
	passes atomic.Int64
	// uncompacted is the bytes evicted since the evictor last compacted,
	// and dirty the ranges of page keys they were evicted in (the first
	// and the last key each eviction batch evicted); only the evictor
	// writes them.
	uncompacted atomic.Int64
	dirty       []keyRange

	// access holds the access bits, one per hash of (volume, page); mask
	// selects a bit index.
	access []atomic.Uint64
	mask   uint64

	kick chan struct{}
	// hand is the location key the next eviction batch starts at; only
	// the evictor goroutine uses it.
	hand []byte
}

func newBudget(e *Engine, limit int64) *budget {
	// About one bit per page of 4 KiB the budget holds, a power of two
	// between 2^12 and 2^24 bits.
	n := uint64(1) << min(max(bits.Len64(uint64(limit>>12)), 12), 24)
	return &budget{
		e:      e,
		limit:  limit,
		access: make([]atomic.Uint64, n/64),
		mask:   n - 1,
		kick:   make(chan struct{}, 1),
		hand:   []byte{tagLocation},
	}
}

// accessBit returns the word and the mask of page p of volume id's bit.
func (b *budget) accessBit(id VolumeID, p PageNo) (*atomic.Uint64, uint64) {
	h := (uint64(id)*0x9e3779b97f4a7c15 ^ uint64(p)) * 0xff51afd7ed558ccd
	i := (h ^ h>>29) & b.mask
	return &b.access[i>>6], 1 << (i & 63)
}

// touch notes a read of page p of volume id.
func (b *budget) touch(id VolumeID, p PageNo) {
	w, m := b.accessBit(id, p)
	if w.Load()&m == 0 {
		w.Or(m)
	}
}

// recent reports whether page p of volume id was read since the last
// call for it, and clears its bit.
func (b *budget) recent(id VolumeID, p PageNo) bool {
	w, m := b.accessBit(id, p)
	return w.Load()&m != 0 && w.And(^m)&m != 0
}

// poke wakes the evictor.
func (b *budget) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// add counts n more bytes of images (n < 0: fewer), and wakes the evictor
// when that takes the count over the budget.
func (b *budget) add(n int64) {
	if n == 0 {
		return
	}
	if b.images.Add(n)+b.meta() > b.limit && n > 0 && b.counted.Load() {
		b.poke()
	}
}

// addMeta counts stubs more stubs (or zero pages) and locs more location
// records (fewer when negative).
func (b *budget) addMeta(stubs, locs int64) {
	if stubs != 0 {
		b.stubs.Add(stubs)
	}
	if locs != 0 {
		b.locs.Add(locs)
	}
}

// meta is the bytes of disk the stubs and location records take, an
// estimate counted in the budget.
func (b *budget) meta() int64 {
	return max(b.stubs.Load(), 0)*stubDiskBytes + max(b.locs.Load(), 0)*locationDiskBytes
}

// used is what the budget counts against its limit: images and metadata.
func (b *budget) used() int64 { return b.images.Load() + b.meta() }

// stats returns the budget's state.
func (b *budget) stats() BudgetStats {
	s := BudgetStats{Budget: b.limit, CachedBytes: -1, Evictions: b.evictions.Load(), EvictedBytes: b.evicted.Load(),
		UncompactedBytes: b.uncompacted.Load()}
	if b.counted.Load() {
		s.CachedBytes, s.MetadataBytes = b.images.Load(), b.meta()
		if used := s.CachedBytes + s.MetadataBytes; b.stuck.Load() && used > b.limit {
			s.OverBudget = used - b.limit
		}
	}
	return s
}

// Budget describes the data directory's disk budget: its size, the bytes
// of page images stored, the evictions, and by how much images that may
// not be evicted (not pushed yet) take it over. Without a budget it is
// the zero value but for CachedBytes, -1 (not counted).
func (e *Engine) Budget() BudgetStats {
	if e.cl != nil {
		b, _ := clientEngineCall(e, "budget", func(l *Engine) (BudgetStats, error) { return l.Budget(), nil })
		return b
	}
	s := BudgetStats{CachedBytes: -1}
	if e.budget != nil {
		s = e.budget.stats()
	}
	e.mu.Lock()
	for _, v := range e.mu.volumes {
		s.PageReads += v.stats.pageReads.Load()
		s.RemoteReads += v.stats.remoteReads.Load()
	}
	e.mu.Unlock()
	s.HitRate = hitRate(s.PageReads, s.RemoteReads)
	return s
}

// hitRate is the part of reads that did not go to the remote.
func hitRate(reads, remote int64) float64 {
	if reads <= 0 {
		return 1
	}
	return float64(reads-remote) / float64(reads)
}

// HitRate is the part of the volume's page reads in this process that
// were served locally (from the page cache or the data directory), not
// from the remote: 1 with no reads.
func (s Stats) HitRate() float64 { return hitRate(s.PageReads, s.RemoteReads) }

// UnpushedBytes returns the bytes of the page images the volume's
// versions not pushed yet wrote (each page once): what a budget may not
// evict. It reads their commit records.
func (v *Volume) UnpushedBytes() (int64, error) {
	if v.cv != nil {
		return clientCall(v, "unpushed_bytes", nil, nil, (*Volume).UnpushedBytes)
	}
	id := VolumeID(v.id.Load())
	head := v.head.Load()
	pushed := v.replState.Load().pushed
	if id == 0 || head.version <= pushed {
		return 0, nil
	}
	var n int64
	seen := map[PageNo]bool{}
	err := v.e.forCommits(id, pushed+1, head.version, func(_ Version, c commitRecord, _ uint32) error {
		for p := range roaring.Values(c.changeset) {
			if !seen[PageNo(p)] {
				seen[PageNo(p)] = true
				n += int64(c.pageSize)
			}
		}
		return nil
	})
	return n, err
}

// start counts, in the background, the images under snap (taken by Open
// before any volume could change), then runs the evictor until the engine
// closes.
func (b *budget) start(snap *pebble.Snapshot) {
	ok := b.e.background(func(ctx context.Context) {
		c, err := countStore(ctx, snap)
		snap.Close()
		if err != nil {
			if ctx.Err() == nil {
				b.e.opts.Logger.Error("cambium: cannot count the page images of the data directory; no page will be evicted", "dir", b.e.dir, "err", err)
			}
			return
		}
		b.images.Add(c.images)
		b.addMeta(c.stubs, c.locs)
		b.counted.Store(true)
		b.run(ctx)
	})
	if !ok {
		snap.Close()
	}
}

// storeCount is what the budget counts: bytes of images, stubs (and zero
// pages), location records.
type storeCount struct{ images, stubs, locs int64 }

// countStore counts the page images, the other page values and the
// location records under snap.
func countStore(ctx context.Context, snap *pebble.Snapshot) (storeCount, error) {
	var c storeCount
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{tagPage}, UpperBound: []byte{tagPage + 1}})
	if err != nil {
		return c, err
	}
	defer it.Close()
	i := 0
	for valid := it.First(); valid; valid = it.Next() {
		if i++; i%4096 == 0 && ctx.Err() != nil {
			return c, ctx.Err()
		}
		if n := imageBytes(it.Value()); n > 0 {
			c.images += n
		} else {
			c.stubs++
		}
	}
	if err := it.Error(); err != nil {
		return c, err
	}
	locs, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{tagLocation}, UpperBound: []byte{tagLocation + 1}, KeyTypes: pebble.IterKeyTypePointsOnly})
	if err != nil {
		return c, err
	}
	defer locs.Close()
	for valid := locs.First(); valid; valid = locs.Next() {
		if i++; i%4096 == 0 && ctx.Err() != nil {
			return c, ctx.Err()
		}
		c.locs++
	}
	return c, locs.Error()
}

// countImages returns the bytes of the page images under snap.
func countImages(ctx context.Context, snap *pebble.Snapshot) (int64, error) {
	c, err := countStore(ctx, snap)
	return c.images, err
}

// imageBytes returns the bytes of the image page value val holds, 0 for
// any other value.
func imageBytes(val []byte) int64 {
	if len(val) > 1 && pageKind(val[0]) == pageImage {
		return int64(len(val) - 1)
	}
	return 0
}

// storedUsage returns what the page keys hold now: bytes of images, how
// many other values (stubs, zeros), and how many location records under
// the same keys.
func (e *Engine) storedUsage(keys [][]byte) (images, stubs, locs int64, err error) {
	for _, k := range keys {
		val, closer, err := e.db.Get(k)
		switch {
		case err == pebble.ErrNotFound:
		case err != nil:
			return 0, 0, 0, err
		default:
			if n := imageBytes(val); n > 0 {
				images += n
			} else {
				stubs++
			}
			closer.Close()
		}
		lk := append([]byte(nil), k...)
		lk[0] = tagLocation
		_, closer, err = e.db.Get(lk)
		switch {
		case err == pebble.ErrNotFound:
		case err != nil:
			return 0, 0, 0, err
		default:
			locs++
			closer.Close()
		}
	}
	return images, stubs, locs, nil
}

// run evicts whenever the count is over the budget, until ctx ends.
func (b *budget) run(ctx context.Context) {
	t := time.NewTicker(evictInterval)
	defer t.Stop()
	for {
		evicted, err := b.evict(ctx)
		if err != nil && ctx.Err() == nil {
			b.e.opts.Logger.Error("cambium: eviction failed; will retry", "dir", b.e.dir, "err", err)
		}
		// Compact each sixteenth of the budget evicted, and what is left
		// once a pass evicts nothing.
		if n := b.uncompacted.Load(); ctx.Err() == nil && (n >= b.limit/compactEvery || n > 0 && !evicted) {
			b.compact(ctx)
		}
		b.passes.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		case <-t.C:
		}
	}
}

// keyRange is a range of keys, both ends included.
type keyRange struct{ lo, hi []byte }

// compactGapPages: ranges of evicted page keys of one volume less than
// this many pages apart are compacted as one.
const compactGapPages = 4096

// compact has Pebble rewrite the tables of the page keys evicted since the
// last compaction (the ranges in dirty, those close together merged): the
// stubs written over evicted images free no disk until then.
func (b *budget) compact(ctx context.Context) {
	ranges := b.dirty
	b.dirty = nil
	// Zero once Pebble is done: until then the disk is not freed.
	defer b.uncompacted.Store(0)
	slices.SortFunc(ranges, func(x, y keyRange) int { return bytes.Compare(x.lo, y.lo) })
	var merged []keyRange
	for _, r := range ranges {
		if n := len(merged); n > 0 && near(merged[n-1].hi, r.lo) {
			if bytes.Compare(r.hi, merged[n-1].hi) > 0 {
				merged[n-1].hi = r.hi
			}
			continue
		}
		merged = append(merged, r)
	}
	for _, r := range merged {
		// Compact's end is exclusive: the key after hi.
		end := append(append([]byte(nil), r.hi...), 0)
		if err := b.e.db.Compact(ctx, r.lo, end, false); err != nil {
			if ctx.Err() == nil {
				b.e.opts.Logger.Warn("cambium: cannot compact the tables of evicted pages", "dir", b.e.dir, "err", err)
			}
			return
		}
	}
}

// near reports whether page keys a <= c are of one volume and less than
// compactGapPages pages apart (or overlap).
func near(a, c []byte) bool {
	if bytes.Compare(c, a) <= 0 {
		return true
	}
	if len(a) != pageKeyLen || len(c) != pageKeyLen || !bytes.Equal(a[:9], c[:9]) {
		return false
	}
	return binary.BigEndian.Uint32(c[9:13])-binary.BigEndian.Uint32(a[9:13]) < compactGapPages
}

// evict evicts images until what the budget counts is a sixteenth under
// it, or until the hand went round with nothing evicted often enough that
// every record was seen with its bit cleared (three wraps: the first turn
// may have started half way). It reports whether it evicted anything.
func (b *budget) evict(ctx context.Context) (bool, error) {
	if b.used() <= b.limit {
		b.stuck.Store(false)
		return false, nil
	}
	if b.stuck.Load() && b.locations.Load() == b.stuckAt && time.Since(b.stuckSince) < stuckRetry {
		return false, nil // no image became evictable since, unless reads went cold
	}
	target := b.limit - b.limit/16
	idle, evicted, did := 0, false, false
	for b.used() > target && ctx.Err() == nil {
		locs := b.locations.Load()
		freed, wrapped, err := b.evictStep(b.used() - target)
		if err != nil {
			return did, err
		}
		evicted = evicted || freed > 0
		did = did || freed > 0
		if !wrapped {
			continue
		}
		if evicted {
			idle = 0
		} else if idle++; idle >= 3 {
			b.stuckAt, b.stuckSince = locs, time.Now()
			b.stuck.Store(true)
			return did, nil
		}
		evicted = false
	}
	b.stuck.Store(false)
	return did, nil
}

// evictStep walks up to evictBatch location records from the hand,
// evicting the images that were not read since its last pass, until it
// freed want bytes. It returns the bytes it freed, and whether the hand
// went round to the first record.
func (b *budget) evictStep(want int64) (freed int64, wrapped bool, err error) {
	walked := 0
	e := b.e
	e.evictMu.Lock()
	defer e.evictMu.Unlock()
	// After the commits the log has not applied yet (newIter settles):
	// an image they supersede is then known to be superseded.
	it, err := e.newIter(&pebble.IterOptions{LowerBound: []byte{tagLocation}, UpperBound: []byte{tagLocation + 1}})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	pages, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagPage}, UpperBound: []byte{tagPage + 1}})
	if err != nil {
		return 0, false, err
	}
	defer pages.Close()
	batch := e.db.NewBatch()
	defer batch.Close()
	evicted, deleted := 0, 0
	var lo, hi []byte // the first and last page keys evicted
	most := evictBatch
	if n := e.opts.testingKnobs.evictBatch; n > 0 {
		most = n
	}
	valid := it.SeekGE(b.hand)
	for ; valid && walked < most && freed < want; valid = it.Next() {
		walked++
		k := it.Key()
		if len(k) != pageKeyLen {
			return 0, false, fmt.Errorf("%w: location key %x", ErrCorrupt, k)
		}
		id := VolumeID(binary.BigEndian.Uint64(k[1:9]))
		p := PageNo(binary.BigEndian.Uint32(k[9:13]))
		if b.recent(id, p) {
			continue
		}
		u := Version(^binary.BigEndian.Uint64(k[13:21]))
		pk := append([]byte(nil), k...)
		pk[0] = tagPage
		// Only the newest image of a page is evicted: an older one is
		// read by pinned snapshots alone, and the pruner deletes it once
		// they are released; evicted, it could be read again only
		// while the remote keeps their version.
		var val []byte
		stale := true
		if pages.SeekGE(pageKey(id, p, ^Version(0))) {
			if _, q, w, ok := decodePageKey(pages.Key()); ok && q == p && w != u {
				if w > u {
					continue // a newer image: keep the record until the pruner takes both
				}
			} else if ok && q == p {
				val, stale = pages.Value(), false
			}
		}
		if err := pages.Error(); err != nil {
			return 0, false, err
		}
		if n := imageBytes(val); !stale && n > 0 {
			// The record is a stub value (pagevalue.go), checked as any.
			if _, err := decodePageValue(pageAt{p: p, u: u}, it.Value(), int(n)); err != nil {
				return 0, false, fmt.Errorf("location record of volume %d: %w", id, err)
			}
			if err := batch.Set(pk, it.Value(), nil); err != nil {
				return 0, false, err
			}
			freed += n
			evicted++
			if lo == nil {
				lo = pk
			}
			hi = pk
		}
		// Evicted, or stale (the image is gone, or a stub already).
		if err := batch.Delete(k, nil); err != nil {
			return 0, false, err
		}
		deleted++
	}
	if valid {
		b.hand = append(b.hand[:0], it.Key()...)
	} else {
		if err := it.Error(); err != nil {
			return 0, false, err
		}
		b.hand, wrapped = append(b.hand[:0], tagLocation), true
	}
	if batch.Empty() {
		return 0, wrapped, nil
	}
	if err := e.writable(); err != nil {
		return 0, wrapped, err
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		return 0, wrapped, e.fail(fmt.Errorf("evict page images: %w", err))
	}
	b.images.Add(-freed)
	b.addMeta(int64(evicted), -int64(deleted))
	b.evictions.Add(int64(evicted))
	b.evicted.Add(freed)
	if evicted > 0 {
		b.uncompacted.Add(freed)
		b.dirty = append(b.dirty, keyRange{lo, hi})
	}
	if fn := e.opts.testingKnobs.afterEvict; fn != nil {
		fn()
	}
	return freed, wrapped, nil
}

// notePagesStored counts images stored: bytes of images, in place of
// replaced stubs, and located location records written.
func (e *Engine) notePagesStored(replaced, located, bytes int64) {
	if b := e.budget; b != nil {
		if located > 0 {
			b.locations.Add(located)
		}
		b.addMeta(-replaced, located)
		b.add(bytes)
	}
}

// CachedBytes returns the bytes of page images the data directory stores:
// with a budget, its count (waiting for Open's to be in); without one, a
// count made now, a scan of every page value.
func (e *Engine) CachedBytes(ctx context.Context) (int64, error) {
	if e.cl != nil {
		return clientEngineCall(e, "cached_bytes", func(l *Engine) (int64, error) { return l.CachedBytes(ctx) })
	}
	if b := e.budget; b != nil {
		for !b.counted.Load() {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		return b.images.Load(), nil
	}
	if err := e.settle(); err != nil {
		return 0, err
	}
	snap := e.db.NewSnapshot()
	defer snap.Close()
	return countImages(ctx, snap)
}
