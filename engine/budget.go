package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
)

// The disk budget (Options.CacheBudget) bounds the bytes of page images
// stored in the data directory, every volume together. Past it, images
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
// reading the kinds of the values they delete). It is not persisted: Open
// takes a Pebble snapshot and counts the images under it in the
// background, a scan of the page keys proportional to what the directory
// stores; the evictor starts once that count is in.
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
// each time a quarter of the budget was evicted, the evictor has Pebble
// compact the page keys its hand passed meanwhile (a manual compaction,
// in the background): the data directory stays about the budget, what
// was evicted since (a quarter of it at most), and the stubs (about 27
// bytes a page once compressed).
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

// compactEvery: the evictor has Pebble compact the page keys its hand
// passed each time it evicted a compactEvery-th of the budget, so that
// evicted images hold at most that much disk. A compaction rewrites the
// range the hand passed, about what was evicted there and what stays, so
// compacting more often costs about the same in all.
const compactEvery = 4

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
	Budget int64 `json:"cache_budget"` // bytes of page images allowed; 0: unbounded
	// CachedBytes is the bytes of page images stored in the data
	// directory, every volume together (-1 until Open's count is in, and
	// when the directory has no budget: it is only counted with one).
	CachedBytes  int64 `json:"cached_bytes"`
	Evictions    int64 `json:"evictions"`     // images evicted back to stubs by this process
	EvictedBytes int64 `json:"evicted_bytes"` // their bytes
	// OverBudget is how far CachedBytes is over the budget when the
	// evictor found nothing more it may evict: images not pushed yet (and
	// older images that pinned snapshots read, until the pruner deletes
	// them).
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
	counted atomic.Bool  // Open's count is in images
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
	// uncompacted is the bytes evicted since the evictor last compacted
	// the page keys, and compactFrom the hand's position then (a location
	// key), or nil when the hand went round since; only the evictor uses
	// them.
	uncompacted int64
	compactFrom []byte

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
	if b.images.Add(n) > b.limit && n > 0 && b.counted.Load() {
		b.poke()
	}
}

// stats returns the budget's state.
func (b *budget) stats() BudgetStats {
	s := BudgetStats{Budget: b.limit, CachedBytes: -1, Evictions: b.evictions.Load(), EvictedBytes: b.evicted.Load()}
	if b.counted.Load() {
		s.CachedBytes = b.images.Load()
		if b.stuck.Load() && s.CachedBytes > b.limit {
			s.OverBudget = s.CachedBytes - b.limit
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
		n, err := countImages(ctx, snap)
		snap.Close()
		if err != nil {
			if ctx.Err() == nil {
				b.e.opts.Logger.Error("cambium: cannot count the page images of the data directory; no page will be evicted", "dir", b.e.dir, "err", err)
			}
			return
		}
		b.images.Add(n)
		b.counted.Store(true)
		b.run(ctx)
	})
	if !ok {
		snap.Close()
	}
}

// countImages returns the bytes of the page images under snap.
func countImages(ctx context.Context, snap *pebble.Snapshot) (int64, error) {
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{tagPage}, UpperBound: []byte{tagPage + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n int64
	i := 0
	for valid := it.First(); valid; valid = it.Next() {
		if i++; i%4096 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		n += imageBytes(it.Value())
	}
	return n, it.Error()
}

// imageBytes returns the bytes of the image page value val holds, 0 for
// any other value.
func imageBytes(val []byte) int64 {
	if len(val) > 1 && pageKind(val[0]) == pageImage {
		return int64(len(val) - 1)
	}
	return 0
}

// storedImageBytes returns the bytes of the images the keys hold now.
func (e *Engine) storedImageBytes(keys [][]byte) (int64, error) {
	var n int64
	for _, k := range keys {
		val, closer, err := e.db.Get(k)
		if err == pebble.ErrNotFound {
			continue
		}
		if err != nil {
			return 0, err
		}
		n += imageBytes(val)
		closer.Close()
	}
	return n, nil
}

// run evicts whenever the count is over the budget, until ctx ends.
func (b *budget) run(ctx context.Context) {
	t := time.NewTicker(evictInterval)
	defer t.Stop()
	for {
		if err := b.evict(ctx); err != nil && ctx.Err() == nil {
			b.e.opts.Logger.Error("cambium: eviction failed; will retry", "dir", b.e.dir, "err", err)
		}
		if b.uncompacted >= b.limit/compactEvery && ctx.Err() == nil {
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

// compact has Pebble rewrite the tables of the page keys the hand passed
// since the last compaction (all of them when it went round meanwhile):
// the stubs written over evicted images free no disk until then.
func (b *budget) compact(ctx context.Context) {
	start, end := []byte{tagPage}, []byte{tagPage + 1}
	if b.compactFrom != nil && bytes.Compare(b.compactFrom, b.hand) < 0 {
		start, end = append([]byte(nil), b.compactFrom...), append([]byte(nil), b.hand...)
		start[0], end[0] = tagPage, tagPage
	}
	b.uncompacted, b.compactFrom = 0, append([]byte(nil), b.hand...)
	if err := b.e.db.Compact(ctx, start, end, false); err != nil && ctx.Err() == nil {
		b.e.opts.Logger.Warn("cambium: cannot compact the tables of evicted pages", "dir", b.e.dir, "err", err)
	}
}

// evict evicts images until the count is a sixteenth under the budget, or
// until the hand went round with nothing evicted often enough that every
// record was seen with its bit cleared (three wraps: the first turn may
// have started half way).
func (b *budget) evict(ctx context.Context) error {
	if b.images.Load() <= b.limit {
		b.stuck.Store(false)
		return nil
	}
	if b.stuck.Load() && b.locations.Load() == b.stuckAt && time.Since(b.stuckSince) < stuckRetry {
		return nil // no image became evictable since, unless reads went cold
	}
	target := b.limit - b.limit/16
	idle, evicted := 0, false
	for b.images.Load() > target && ctx.Err() == nil {
		locs := b.locations.Load()
		freed, wrapped, err := b.evictStep(b.images.Load() - target)
		if err != nil {
			return err
		}
		evicted = evicted || freed > 0
		if !wrapped {
			continue
		}
		if evicted {
			idle = 0
		} else if idle++; idle >= 3 {
			b.stuckAt, b.stuckSince = locs, time.Now()
			b.stuck.Store(true)
			return nil
		}
		evicted = false
	}
	b.stuck.Store(false)
	return nil
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
	evicted := 0
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
		}
		// Evicted, or stale (the image is gone, or a stub already).
		if err := batch.Delete(k, nil); err != nil {
			return 0, false, err
		}
	}
	if valid {
		b.hand = append(b.hand[:0], it.Key()...)
	} else {
		if err := it.Error(); err != nil {
			return 0, false, err
		}
		b.hand, wrapped = append(b.hand[:0], tagLocation), true
		b.compactFrom = nil
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
	b.evictions.Add(int64(evicted))
	b.evicted.Add(freed)
	b.uncompacted += freed
	if fn := e.opts.testingKnobs.afterEvict; fn != nil {
		fn()
	}
	return freed, wrapped, nil
}

// notePagesStored counts images stored in place of stubs: bytes of
// images, of which located got a location record.
func (e *Engine) notePagesStored(located, bytes int64) {
	if b := e.budget; b != nil {
		if located > 0 {
			b.locations.Add(located)
		}
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
