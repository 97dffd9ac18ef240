package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/engine/internal/readahead"
	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/segment"
)

// frameKey identifies a frame among every segment.
type frameKey struct {
	seg    SegmentID
	offset int64
}

type fetchCall struct {
	done  chan struct{}
	pages []byte
	err   error
	// prefetch is set for a frame fetched ahead of a scan: a reader that
	// finds it failed fetches the frame itself.
	prefetch bool
}

// pageFromFrame returns page p's image, as of version ver, from the frame
// s names, sharing the fetch with any reader of the same frame and reading
// ahead for scans. A frame that a fetch ahead stored after this read found
// its stub is read from local storage, not fetched again.
func (v *Volume) pageFromFrame(s stub, p PageNo, ver Version, pageSize int) ([]byte, error) {
	r, err := v.replica()
	if err != nil {
		return nil, fmt.Errorf("page %d of %q is in the remote (segment %s): %w", p, v.name, s.seg, ErrNoRemote)
	}
	id := VolumeID(v.id.Load())
	var img []byte
	stored := func() bool {
		// A fetch ahead may have put the page in the memory cache alone
		// since this read missed it there (aheadInMemory).
		if out, ok := v.e.cache.get(v, p, ver, nil); ok {
			img = out
			return true
		}
		u, val, found, err := v.lookupPage(id, p, ver)
		if err != nil || !found {
			return false
		}
		pv, err := decodePageValue(pageAt{v.name, p, u}, val, pageSize)
		if err != nil || pv.kind != pageImage {
			return false
		}
		img = pv.image
		return true
	}
	for range 3 {
		pages, err := v.framePages(r, s, pageSize, true, stored)
		switch {
		case err == nil:
			at := int(p-s.frame.First) * pageSize
			return pages[at : at+pageSize], nil
		case !errors.Is(err, errFrameStored):
			return nil, err
		case img != nil || stored():
			return img, nil
		}
	}
	return nil, fmt.Errorf("%w: page %d of %q: its frame is stored, yet no image of it is", ErrCorrupt, p, v.name)
}

// errFrameStored ends the fetch of a frame whose pages turned out to be
// stored already.
var errFrameStored = errors.New("frame already stored")

// fetchFrame returns the decoded pages of the frame s names, fetching it
// once however many readers ask at the same time, and stores its pages
// locally.
func (v *Volume) fetchFrame(r *replica, s stub, pageSize int) ([]byte, error) {
	return v.framePages(r, s, pageSize, false, nil)
}

// framePages returns the decoded pages of frame s: those of a fetch in
// flight when there is one, else fetched now, together with the frames
// readahead adds when scan is set. When stored, called once the frame is
// claimed, reports that its pages are in local storage after all (a fetch
// ahead stored them), it returns errFrameStored instead.
func (v *Volume) framePages(r *replica, s stub, pageSize int, scan bool, stored func() bool) ([]byte, error) {
	k := frameKey{s.seg, s.frame.Offset}
	retried := false
	if scan && int(v.head.Load().pageSize) != pageSize {
		// A reader of a version before a page size change: readahead
		// plans from the newest version, whose frames hold pages of
		// another size.
		scan = false
	}
	for {
		r.mu.Lock()
		c, busy := r.fetches[k]
		r.mu.Unlock()
		if busy {
			<-c.done
			if c.err == nil || !c.prefetch || retried {
				return c.pages, c.err
			}
			// The fetch ahead failed, or found the frame stored; the
			// error, if it persists, is then this read's own.
			retried, scan = true, false
			continue
		}
		run, later, at := []stub{s}, [][]stub(nil), 0
		if scan {
			run, later = v.readahead(s)
			if len(run) == 1 && len(later) == 0 {
				run, at, later = v.catchUpWindow(s)
			}
		}
		calls := r.claim(run, false)
		if len(calls) <= at && at > 0 {
			// A frame before s's is being fetched: let its readers
			// fetch for themselves, and fetch from s's frame on.
			for _, c := range calls {
				c.prefetch, c.err = true, errFrameStored
			}
			r.release(run[:len(calls)], calls)
			run, at = run[at:], 0
			calls = r.claim(run, false)
		}
		if len(calls) == 0 {
			continue // another reader claimed s first
		}
		run = run[:len(calls)]
		if stored != nil && stored() {
			// Readers waiting on these calls fetch for themselves.
			for _, c := range calls {
				c.prefetch, c.err = true, errFrameStored
			}
			r.release(run, calls)
			return nil, errFrameStored
		}
		for _, l := range later {
			v.prefetch(r, l, pageSize)
		}
		ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
		v.fetchCurrent(ctx, r, run, calls, pageSize, at)
		cancel()
		return calls[at].pages, calls[at].err
	}
}

// claim registers fetches of the frames of run, from the first up to the
// first one already being fetched, and returns them.
func (r *replica) claim(run []stub, prefetch bool) []*fetchCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	var calls []*fetchCall
	for _, s := range run {
		k := frameKey{s.seg, s.frame.Offset}
		if _, busy := r.fetches[k]; busy {
			break
		}
		c := &fetchCall{done: make(chan struct{}), prefetch: prefetch}
		r.fetches[k] = c
		calls = append(calls, c)
	}
	return calls
}

// release ends the claimed fetches of run, waking their readers.
func (r *replica) release(run []stub, calls []*fetchCall) {
	r.mu.Lock()
	for i := range calls {
		delete(r.fetches, frameKey{run[i].seg, run[i].frame.Offset})
	}
	r.mu.Unlock()
	for _, c := range calls {
		close(c.done)
	}
}

// fetchClaimed reads the frames of run (consecutive in one segment, each
// claimed by the call at the same index) with one ranged GET, sets each
// call's pages or error, stores the verified pages, and releases the
// calls.
func (v *Volume) fetchClaimed(ctx context.Context, r *replica, run []stub, calls []*fetchCall, pageSize int) {
	defer r.release(run, calls)
	pages, err := v.fetchFrames(ctx, r.store, run, pageSize)
	for i, c := range calls {
		if c.pages = pages[i]; c.pages == nil {
			c.err = err
		}
	}
	// A run of several frames is a scan's (its window or a fetch ahead);
	// one frame alone, a random read's.
	scan := len(calls) > 1 || len(calls) > 0 && calls[0].prefetch
	if _, err := v.storeFrames(run, pages, pageSize, scan); err != nil {
		// The pages are verified; failing to keep them only costs a
		// fetch next time.
		v.e.opts.Logger.Warn("cambium: cannot store fetched pages", "volume", v.name, "err", err)
	}
}

// fetchCurrent fetches, like fetchClaimed, the claimed frames of run that
// still are stubs (the frame at index reader, if not negative, is taken to
// be one: its reader has just checked):
// the run was planned from stubs read before its frames were claimed, and
// another fetch may have stored some of them since. Those are released
// with errFrameStored, for their readers to read them locally.
func (v *Volume) fetchCurrent(ctx context.Context, r *replica, run []stub, calls []*fetchCall, pageSize int, reader int) {
	id := VolumeID(v.id.Load())
	head := v.head.Load().version
	current := make([]bool, len(run))
	for i, s := range run {
		if i == reader {
			current[i] = true
			continue
		}
		u, val, found, err := v.lookupPage(id, s.frame.First, head)
		current[i] = err != nil || (found && pointsTo(pageAt{v.name, s.frame.First, u}, val, pageSize, s)) // on error, fetch
	}
	for i := 0; i < len(run); {
		j := i + 1
		for j < len(run) && current[j] == current[i] {
			j++
		}
		if current[i] {
			v.fetchClaimed(ctx, r, run[i:j], calls[i:j], pageSize)
		} else {
			for _, c := range calls[i:j] {
				c.prefetch, c.err = true, errFrameStored
			}
			r.release(run[i:j], calls[i:j])
		}
		i = j
	}
}

// fetchFrames reads the frames of run, consecutive in one segment, from
// store with one ranged GET and returns each frame's verified pages. A
// frame that cannot be had is nil, and err says why.
func (v *Volume) fetchFrames(ctx context.Context, store remote.Store, run []stub, pageSize int) ([][]byte, error) {
	out := make([][]byte, len(run))
	key := manifest.SegmentKey(v.name, run[0].seg)
	off := run[0].frame.Offset
	data, err := store.GetRange(ctx, key, off, run[len(run)-1].frame.End()-off)
	if err != nil {
		return out, fmt.Errorf("fetch pages %d..%d of %q from %s: %w", run[0].frame.First, run[len(run)-1].frame.Last, v.name, key, err)
	}
	var first error
	for i, s := range run {
		lo := s.frame.Offset - off
		if int64(len(data)) < lo+int64(s.frame.Length) {
			if first == nil {
				first = fmt.Errorf("%w: %s: short read (%d bytes) at offset %d", ErrRemoteCorrupt, key, len(data), off)
			}
			continue
		}
		pages, err := decodeStubFrame(key, s, pageSize, data[lo:lo+int64(s.frame.Length)])
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		out[i] = pages
		v.stats.framesFetched.Add(1)
	}
	return out, first
}

// Readahead: package internal/readahead plans the fetches of scans (its
// doc has the policy); the engine claims the frames it plans, fetches
// them, and runs the background prefetch.

var _ readahead.Frame[stub] = stub{}

// Frame returns the frame that holds the stub's page.
func (s stub) Frame() segment.Frame { return s.frame }

// SameSegment reports whether o is a stub of a frame of the same segment.
func (s stub) SameSegment(o stub) bool { return s.seg == o.seg }

// readahead returns the frames to fetch now for a read of stub s, s's
// first, and runs of frames to fetch ahead of the reader; it starts the
// scan's background prefetch once the window is large enough.
func (v *Volume) readahead(s stub) (now []stub, later [][]stub) {
	v.boundReadahead()
	now, later, extend := v.ra.Read(s, v.readaheadLookup(v.head.Load()))
	if extend {
		v.extendReadahead()
	}
	return now, later
}

// readaheadShare: with a disk budget, one plan of a scan's readahead
// fetches at most this share of the budget (the default plan, 8 windows
// of 256 one-page frames, is 8 MiB of 4 KiB pages: a 64 MiB budget's
// share). Frames fetched ahead are stored and may be evicted before the
// scan reaches them when they are much of the budget.
const readaheadShare = 8

// boundReadahead bounds the volume's readahead to its share of the disk
// budget, in pages of the volume's page size (none without a budget).
func (v *Volume) boundReadahead() {
	if b := v.e.budget; b != nil {
		if ps := int64(v.head.Load().pageSize); ps > 0 {
			v.ra.SetMaxAhead(int(max(b.limit/readaheadShare/ps, 1)))
		}
	}
}

// noteRead is called for each page read from local storage: a scan's
// read that reaches what was prefetched starts the next prefetch.
func (v *Volume) noteRead(p PageNo) {
	if v.ra.LocalRead(p) {
		v.extendReadahead()
	}
}

// extendReadahead starts, in the background, the fetch of the next
// windows of frames ahead of the scan, unless one is being started.
func (v *Volume) extendReadahead() {
	if !v.raExtending.CompareAndSwap(false, true) {
		return
	}
	ok := v.e.background(func(context.Context) {
		defer v.raExtending.Store(false)
		r, err := v.replica()
		if err != nil {
			return
		}
		head := v.head.Load()
		v.boundReadahead()
		pf := v.ra.Extend(v.readaheadLookup(head))
		for _, run := range pf.Runs {
			v.prefetch(r, run, int(head.pageSize))
		}
		v.ra.Started(pf)
	})
	if !ok {
		v.raExtending.Store(false)
	}
}

// readaheadLookup tells the readahead planner what is at a page in head,
// the newest version: a stub, a page stored locally (an image, zeros, or a
// damaged value that does not claim to be a stub), or nothing it can use
// (no value, one it cannot read, or a damaged stub).
func (v *Volume) readaheadLookup(head *state) readahead.Lookup[stub] {
	id := VolumeID(v.id.Load())
	return func(p PageNo) (readahead.Kind, stub) {
		u, val, found, err := v.lookupPage(id, p, head.version)
		if err != nil || !found {
			return readahead.Missing, stub{}
		}
		pv, err := decodePageValue(pageAt{v.name, p, u}, val, int(head.pageSize))
		switch {
		case pv.kind != pageStub:
			return readahead.Local, stub{}
		case err != nil:
			return readahead.Missing, stub{}
		case v.e.budget != nil && v.e.cache.has(v, p, head.version):
			// Fetched ahead into the memory cache alone (aheadInMemory).
			return readahead.Local, stub{}
		}
		return readahead.Remote, pv.stub
	}
}

// prefetch fetches the frames of run in the background; readers of them
// meanwhile wait for it.
func (v *Volume) prefetch(r *replica, run []stub, pageSize int) {
	calls := r.claim(run, true)
	if len(calls) == 0 {
		return
	}
	run = run[:len(calls)]
	if !v.e.background(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, pullTimeout)
		defer cancel()
		v.fetchCurrent(ctx, r, run, calls, pageSize, -1)
	}) {
		for _, c := range calls {
			c.err = ErrClosed
		}
		r.release(run, calls)
	}
}

func decodeStubFrame(key string, s stub, pageSize int, data []byte) ([]byte, error) {
	pages, err := segment.DecodeFrame(s.frame, s.salt, pageSize, data, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s, frame of pages %d..%d at offset %d: %w", ErrRemoteCorrupt, key, s.frame.First, s.frame.Last, s.frame.Offset, err)
	}
	return pages, nil
}

// storeFrames replaces with images the stubs that point to the frames of
// run, in one batch: for each page of each frame whose pages are not nil,
// its newest entry if that is such a stub. It returns how many it replaced.
//
// Frames a scan fetched (ahead: its window, or a fetch ahead of it) that
// the disk budget has no room for are not stored: their pages go to the
// memory page cache alone, where the scan reads them (see aheadInMemory).
func (v *Volume) storeFrames(run []stub, pages [][]byte, pageSize int, ahead bool) (int, error) {
	if ahead && v.aheadInMemory(run, pages, pageSize) {
		return v.cacheFrames(run, pages, pageSize)
	}
	id := VolumeID(v.id.Load())
	v.fetchMu.RLock() // the pruner must not delete a stub we replace
	defer v.fetchMu.RUnlock()
	it, err := v.e.newIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := v.e.db.NewBatch()
	defer b.Close()
	head := v.head.Load().version
	n := 0
	err = v.forStubs(it, id, head, run, pages, pageSize, func(p PageNo, u Version, img []byte) error {
		val := b.SetDeferred(len(it.Key()), imageValueLen(pageSize))
		copy(val.Key, it.Key())
		encodeImage(val.Value, img)
		val.Finish()
		// The stub says where the image is: it may be evicted back to
		// it (budget.go).
		if err := b.Set(locationKey(id, p, u), it.Value(), nil); err != nil {
			return err
		}
		if bud := v.e.budget; bud != nil {
			// As if read: pages fetched ahead of a scan stay until it
			// reaches them.
			bud.touch(id, p)
		}
		n++
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, err
	}
	v.stats.pagesFetched.Add(int64(n))
	v.e.notePagesStored(int64(n), int64(n), int64(n)*int64(pageSize))
	return n, nil
}

// aheadInMemory reports whether the pages of frames a scan fetched are to
// be kept in the memory page cache alone, not stored: with a
// disk budget that has no room for them (storing them would take what it
// counts past the evictor's target), when the page cache holds twice what
// a scan reads ahead. A scan longer than the budget then does not write
// each image only to evict it, nor evict the pages read before it: the
// cache resists scans.
func (v *Volume) aheadInMemory(run []stub, pages [][]byte, pageSize int) bool {
	b := v.e.budget
	if b == nil || v.e.cache == nil || !b.counted.Load() {
		return false
	}
	if ahead := min(b.limit/readaheadShare, 8<<20); v.e.opts.CacheBytes < 2*ahead {
		return false
	}
	var n int64
	for i := range run {
		n += int64(len(pages[i]))
	}
	return b.used()+n > b.limit-b.limit/16
}

// cacheFrames puts into the memory page cache the images of the pages
// of the frames of run whose newest entry is a stub pointing to the frame
// (as storeFrames would store them), and returns how many.
func (v *Volume) cacheFrames(run []stub, pages [][]byte, pageSize int) (int, error) {
	id := VolumeID(v.id.Load())
	head := v.head.Load().version
	it, err := v.e.newIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := 0
	err = v.forStubs(it, id, head, run, pages, pageSize, func(p PageNo, u Version, img []byte) error {
		// Refused when a commit after head has begun.
		v.e.cache.insert(v, p, u, head, bytes.Clone(img))
		n++
		return nil
	})
	v.stats.pagesFetched.Add(int64(n))
	return n, err
}

// forStubs calls fn, with it positioned on the entry, for each page of the
// frames of run whose pages are not nil and whose newest entry at head is
// a stub pointing to its frame: the page, the version of the stub, and the
// page's image from pages.
func (v *Volume) forStubs(it *pebble.Iterator, id VolumeID, head Version, run []stub, pages [][]byte, pageSize int, fn func(p PageNo, u Version, img []byte) error) error {
	for i, s := range run {
		if pages[i] == nil {
			continue
		}
		for p := s.frame.First; ; p++ {
			if it.SeekGE(pageKey(id, p, head)) {
				if _, q, u, ok := decodePageKey(it.Key()); ok && q == p && pointsTo(pageAt{v.name, p, u}, it.Value(), pageSize, s) {
					at := int(p-s.frame.First) * pageSize
					if err := fn(p, u, pages[i][at:at+pageSize]); err != nil {
						return err
					}
				}
			}
			if p == s.frame.Last {
				break
			}
		}
	}
	return it.Error()
}

// pointsTo reports whether page value val (of page at) is a stub for
// frame s.
func pointsTo(at pageAt, val []byte, pageSize int, s stub) bool {
	pv, err := decodePageValue(at, val, pageSize)
	return err == nil && pv.kind == pageStub && pv.stub.seg == s.seg && pv.stub.frame.Offset == s.frame.Offset
}

// HydrateResult describes one Hydrate.
// Its JSON is the result of PRAGMA cambium_hydrate and of cambium hydrate
// --json.
type HydrateResult struct {
	Pages     int   `json:"pages"`           // pages downloaded and stored
	Frames    int   `json:"frames"`          // frames fetched
	Requests  int64 `json:"remote_requests"` // ranged GETs made
	BytesRead int64 `json:"remote_bytes_read"`
}

// hydrateRunBytes bounds one ranged read of Hydrate; hydrateGapBytes is
// the largest gap between wanted frames read through rather than split.
const (
	hydrateRunBytes    = 8 << 20
	hydrateGapBytes    = 64 << 10
	hydrateConcurrency = 8
)

// Hydrate downloads every page of the newest version that is not stored
// locally, coalescing neighbouring frames into ranged reads of up to 8 MiB
// made 8 at a time.
func (v *Volume) Hydrate(ctx context.Context) (HydrateResult, error) {
	if v.cv != nil {
		return clientCall(v, "hydrate", nil, nil, func(lv *Volume) (HydrateResult, error) { return lv.Hydrate(ctx) })
	}
	r, err := v.replica()
	if err != nil {
		return HydrateResult{}, fmt.Errorf("hydrate %q: %w", v.name, err)
	}
	snap := v.Snapshot()
	defer snap.Release()
	stubs, err := v.stubsAt(snap)
	if err != nil {
		return HydrateResult{}, fmt.Errorf("hydrate %q: %w", v.name, err)
	}
	op := r.op()
	var pagesDone, framesDone atomic.Int64

	runs := groupRuns(stubs, hydrateGapBytes)
	first := forEach(ctx, len(runs), hydrateConcurrency, func(ctx context.Context, i int) error {
		pages, frames, err := v.fetchRun(ctx, op, runs[i], snap.PageSize())
		if errors.Is(err, remote.ErrNotFound) {
			// A segment the garbage collector deleted: read its pages
			// one by one, through the remote's kept maps (collectedPage).
			pages, frames, err = v.readRun(snap, runs[i])
		}
		pagesDone.Add(int64(pages))
		framesDone.Add(int64(frames))
		return err
	})
	st := op.store.Stats()
	res := HydrateResult{
		Pages:     int(pagesDone.Load()),
		Frames:    int(framesDone.Load()),
		Requests:  st.Requests(),
		BytesRead: st.BytesRead(),
	}
	if first != nil {
		return res, fmt.Errorf("hydrate %q: %w", v.name, first)
	}
	return res, nil
}

// groupRuns groups stubs by segment, orders them by offset, drops
// duplicates, and cuts them into runs of at most hydrateRunBytes, each
// read with one ranged read: frames at most gap bytes apart are read
// through.
func groupRuns(stubs []stub, gap int64) [][]stub {
	slices.SortFunc(stubs, func(a, b stub) int {
		if c := bytes.Compare(a.seg[:], b.seg[:]); c != 0 {
			return c
		}
		return int(a.frame.Offset - b.frame.Offset)
	})
	stubs = slices.CompactFunc(stubs, func(a, b stub) bool { return a.seg == b.seg && a.frame.Offset == b.frame.Offset })
	var runs [][]stub
	for i := 0; i < len(stubs); {
		j := i + 1
		for j < len(stubs) && stubs[j].seg == stubs[i].seg &&
			stubs[j].frame.Offset-stubs[j-1].frame.End() <= gap &&
			stubs[j].frame.End()-stubs[i].frame.Offset <= hydrateRunBytes {
			j++
		}
		runs = append(runs, stubs[i:j])
		i = j
	}
	return runs
}

// fetchRun reads the frames of run, which lie in one segment in offset
// order, with one ranged GET, stores their pages, and returns how many
// pages it stored and how many frames it fetched.
func (v *Volume) fetchRun(ctx context.Context, op remoteOp, run []stub, pageSize int) (pages, frames int, err error) {
	data, err := v.fetchFrames(ctx, op.store, run, pageSize)
	if err != nil {
		return 0, 0, err
	}
	pages, err = v.storeFrames(run, data, pageSize, false)
	return pages, len(run), err
}

// readRun reads, through snap, every page of the frames of run, and
// returns how many pages and frames it read.
func (v *Volume) readRun(snap *Snapshot, run []stub) (pages, frames int, err error) {
	var buf []byte
	for _, s := range run {
		for p := s.frame.First; p <= s.frame.Last && uint32(p) <= snap.PageCount(); p++ {
			if buf, err = snap.ReadPage(p, buf[:0]); err != nil {
				return pages, frames, err
			}
			pages++
		}
		frames++
	}
	return pages, frames, nil
}

// stubsAt returns the stubs that snap's pages read: every page whose
// newest entry at or before snap's version is a stub.
func (v *Volume) stubsAt(snap *Snapshot) ([]stub, error) {
	id := VolumeID(v.id.Load())
	if id == 0 {
		return nil, nil
	}
	it, err := v.e.newIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []stub
	ver := snap.Version()
	for p := PageNo(1); uint32(p) <= snap.PageCount(); {
		if !it.SeekGE(pageKey(id, p, ver)) {
			break
		}
		_, q, u, ok := decodePageKey(it.Key())
		if !ok {
			return nil, fmt.Errorf("%w: page key %x", ErrCorrupt, it.Key())
		}
		if q != p {
			p = q // no entry for the pages in between
			continue
		}
		if !snap.st.cutOff(p, u, ver) {
			// Damage to values of other kinds is not Hydrate's to report.
			pv, err := decodePageValue(pageAt{v.name, p, u}, it.Value(), int(snap.st.pageSize))
			if pv.kind == pageStub {
				if err != nil {
					return nil, err
				}
				out = append(out, pv.stub)
			}
		}
		p++
	}
	return out, it.Error()
}

// resolveCollected reads page p of version n again when the segment its
// stub s names is gone (cause): the garbage collector deleted it once no
// retained version read it there. The stub (written at version u) is
// replaced with the image collectedPage finds.
//
// The remote keeps the maps of the versions in its retention window only,
// and a writer's newest versions may not be pushed yet; but the newest
// pushed (or pulled) version's map is always kept, and when no commit
// after u up to it wrote p, it names the same image. That version's map
// is read then: for a page evicted from a writer ahead of its remote, or
// from under a snapshot pinned at an older version (budget.go).
func (v *Volume) resolveCollected(s stub, p PageNo, u, n Version, pageSize int, cause error) ([]byte, error) {
	if pushed := v.replState.Load().pushed; pushed != n && pushed >= u && v.sameImage(p, u, pushed) {
		n = pushed
	}
	img, at, err := v.collectedPage(p, n, pageSize, cause)
	if err != nil {
		return nil, err
	}
	if err := v.replaceStub(p, u, s, img, at); err != nil {
		v.e.opts.Logger.Warn("cambium: cannot store a page read again from a checkpoint", "volume", v.name, "page", p, "err", err)
	}
	return img, nil
}

// sameImage reports whether version n reads page p's image written at
// version u: no commit after u up to n wrote p or cut it off.
func (v *Volume) sameImage(p PageNo, u, n Version) bool {
	w, _, found, err := v.lookupPage(VolumeID(v.id.Load()), p, n)
	return err == nil && found && w == u && !v.head.Load().cutOff(p, u, n)
}

// collectedPage returns page p's image at version n when the segment that
// held it is gone (cause): the garbage collector deleted it once no kept
// map named it, a kept checkpoint or commit naming the same image
// elsewhere. It reads the remote's full page map of version n (the newest
// checkpoint at or before n and the commits after it, kept for every page
// read of n) and fetches the page where that map says; if the remote no
// longer keeps version n, it is ErrCollected.
//
// at is the frame it read the page from (its seg is zero for a page the
// map says is zeros).
func (v *Volume) collectedPage(p PageNo, n Version, pageSize int, cause error) (img []byte, at stub, err error) {
	r, err := v.replica()
	if err != nil {
		return nil, stub{}, cause
	}
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	img, at, err = v.pageFromMap(ctx, r, p, n, pageSize, cause)
	if errors.Is(err, remote.ErrNotFound) {
		// The map remembered named a segment collected since (another
		// collection moved on): read the map again, once.
		r.resolved.Store(nil)
		img, at, err = v.pageFromMap(ctx, r, p, n, pageSize, cause)
	}
	if errors.Is(err, remote.ErrNotFound) {
		return nil, stub{}, fmt.Errorf("read page %d of %q at version %d: %w: the segment the remote's map of the version names is gone too (%v)", p, v.name, n, ErrCollected, err)
	}
	return img, at, err
}

// pageFromMap reads page p through the remote's full map of version n,
// and returns the frame it read it from.
func (v *Volume) pageFromMap(ctx context.Context, r *replica, p PageNo, n Version, pageSize int, cause error) ([]byte, stub, error) {
	m, err := v.mapToResolve(ctx, r, n)
	if err != nil {
		if errors.Is(err, ErrCollected) {
			return nil, stub{}, fmt.Errorf("read page %d of %q: the segment holding its image was deleted by the remote's garbage collection (%v), and %w", p, v.name, cause, err)
		}
		return nil, stub{}, fmt.Errorf("read page %d of %q: %w (and then: %w)", p, v.name, cause, err)
	}
	ref, fr, zero, ok := m.Locate(p)
	switch {
	case !ok:
		return nil, stub{}, fmt.Errorf("%w: the remote's map of version %d has no page %d", ErrRemoteCorrupt, n, p)
	case zero:
		return make([]byte, pageSize), stub{}, nil
	}
	at := stub{seg: ref.ID, salt: ref.Salt, size: ref.Size, frame: fr}
	pages, err := v.fetchFrame(r, at, pageSize)
	if err != nil {
		return nil, stub{}, fmt.Errorf("read page %d of %q at version %d: %w", p, v.name, n, err)
	}
	off := int(p-fr.First) * pageSize
	return pages[off : off+pageSize], at, nil
}

// resolved is the remote's full page map of version n, read for the pages
// of n whose segments were collected.
type resolved struct {
	n Version
	m *manifest.Map
}

// mapToResolve returns the remote's full page map of version n, reading it
// once for every page read of n.
func (v *Volume) mapToResolve(ctx context.Context, r *replica, n Version) (*manifest.Map, error) {
	if c := r.resolved.Load(); c != nil && c.n == n {
		return c.m, nil
	}
	m, err := v.remoteMapAt(ctx, r.op(), n)
	if err != nil {
		return nil, err
	}
	r.resolved.Store(&resolved{n: n, m: m})
	return m, nil
}

// replaceStub replaces the value of page p written at version u with img,
// if it still is stub s; at is the frame img was read from, which a
// location record names (none if its seg is zero).
func (v *Volume) replaceStub(p PageNo, u Version, s stub, img []byte, at stub) error {
	id := VolumeID(v.id.Load())
	v.fetchMu.RLock() // the pruner must not delete the stub we replace
	defer v.fetchMu.RUnlock()
	key := pageKey(id, p, u)
	val, closer, err := v.e.getRaw(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	current := pointsTo(pageAt{v.name, p, u}, val, len(img), s)
	closer.Close()
	if !current {
		return nil
	}
	out := make([]byte, imageValueLen(len(img)))
	encodeImage(out, img)
	b := v.e.db.NewBatch()
	defer b.Close()
	if err := b.Set(key, out, nil); err != nil {
		return err
	}
	located := int64(0)
	if at.seg != (SegmentID{}) {
		located = 1
		loc := encodeStub(nil, manifest.SegmentRef{ID: at.seg, Salt: at.salt, Size: at.size}, at.frame)
		if err := b.Set(locationKey(id, p, u), loc, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	v.e.notePagesStored(1, located, int64(len(img)))
	return nil
}

// warmGapBytes is the largest gap between the frames of a rewarm read
// through rather than split: smaller than Hydrate's, since a replica's hot
// set is often a small part of what changed.
const warmGapBytes = 16 << 10

// SetWarm turns rewarming after pulls on (the default) or off. After a
// pull, the pages that this replica had stored and that the pull changed
// (its hot set) are fetched again in the background, in coalesced ranged
// reads made hydrateConcurrency at a time, so that its readers find them
// local rather than paying a request each; a reader of a page being
// fetched waits for that fetch.
func (v *Volume) SetWarm(on bool) {
	if v.cv != nil {
		clientCall(v, "set_warm", on, nil, func(lv *Volume) (struct{}, error) { lv.SetWarm(on); return struct{}{}, nil })
		return
	}
	v.warm.Store(on)
}

// rewarm fetches, in the background, the pages of changed that had an
// image stored at base's version and are stubs now. It releases base.
func (v *Volume) rewarm(r *replica, base *Snapshot, changed *roaring.Bitmap) {
	v.warming.Add(1)
	ok := v.e.background(func(ctx context.Context) {
		defer v.warming.Done()
		hot, err := v.storedAt(base, changed)
		base.Release()
		if err != nil || hot.IsEmpty() {
			return
		}
		snap := v.Snapshot()
		defer snap.Release()
		stubs, err := v.stubsOf(snap, hot)
		if err != nil {
			return
		}
		runs := groupRuns(stubs, warmGapBytes)
		// Claim every run before fetching any, so that readers wait for
		// these fetches rather than making their own.
		claimed := make([][]*fetchCall, len(runs))
		for i, run := range runs {
			claimed[i] = r.claim(run, true)
			runs[i] = run[:len(claimed[i])]
		}
		ctx, cancel := context.WithTimeout(ctx, pullTimeout)
		defer cancel()
		// Every claimed run is fetched (or fails, ctx ended), never left:
		// its readers wait for it.
		var wg sync.WaitGroup
		sem := make(chan struct{}, hydrateConcurrency)
		for i, run := range runs {
			if len(run) == 0 {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				v.fetchCurrent(ctx, r, run, claimed[i], int(snap.st.pageSize), -1)
			}()
		}
		wg.Wait()
		v.stats.rewarms.Add(1)
	})
	if !ok {
		v.warming.Done()
		base.Release()
	}
}

// Warmed waits until the fetches that rewarm the hot set after the pulls
// made so far are done (a program that exits after a pull calls it, or
// they are cut short by Engine.Close), or until ctx ends.
func (v *Volume) Warmed(ctx context.Context) error {
	if v.cv != nil {
		_, err := clientCall(v, "warmed", nil, nil, func(lv *Volume) (struct{}, error) { return struct{}{}, lv.Warmed(ctx) })
		return err
	}
	done := make(chan struct{})
	go func() {
		v.warming.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// storedAt returns the pages of pages whose value at snap's version is an
// image stored locally.
func (v *Volume) storedAt(snap *Snapshot, pages *roaring.Bitmap) (*roaring.Bitmap, error) {
	out := roaring.New()
	err := v.valuesAt(snap, pages, func(p PageNo, pv pageValue) {
		if pv.kind == pageImage {
			out.Add(uint32(p))
		}
	})
	return out, err
}

// stubsOf returns the stubs that the pages of pages read at snap.
func (v *Volume) stubsOf(snap *Snapshot, pages *roaring.Bitmap) ([]stub, error) {
	var out []stub
	err := v.valuesAt(snap, pages, func(_ PageNo, pv pageValue) {
		if pv.kind == pageStub {
			out = append(out, pv.stub)
		}
	})
	return out, err
}

// valuesAt calls fn with the value, at snap's version, of each page of
// pages that has one (within snap's page count and not cut off), read with
// one iterator. Damaged values are skipped: they are not these callers'
// to report.
func (v *Volume) valuesAt(snap *Snapshot, pages *roaring.Bitmap, fn func(PageNo, pageValue)) error {
	id := VolumeID(v.id.Load())
	if id == 0 {
		return nil
	}
	it, err := v.e.newIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		return err
	}
	defer it.Close()
	ver := snap.Version()
	for p := range roaring.Values(pages) {
		if p == 0 || p > snap.PageCount() {
			continue
		}
		if !it.SeekGE(pageKey(id, PageNo(p), ver)) {
			break
		}
		_, q, u, ok := decodePageKey(it.Key())
		if !ok || q != PageNo(p) || snap.st.cutOff(q, u, ver) {
			continue
		}
		if pv, err := decodePageValue(pageAt{v.name, q, u}, it.Value(), int(snap.st.pageSize)); err == nil {
			fn(q, pv)
		}
	}
	return it.Error()
}

// Catch-up readahead. The pages a pull changed are read together more
// often than not: a replica that follows a writer serves the rows the
// writer just wrote. They sit densely in the level segments of the
// rollups the pull read, so a read of one of them that readahead would
// fetch alone fetches instead the frames of the pull's pages around it in
// the same segment: the catchUpWindowBytes-aligned window of the segment
// that holds its frame, the run that holds its frame now and the rest in
// the background. After a pull that changed half of the volume or more (a
// cold start, a checkpoint) there is no catch-up: a random read there
// fetches its frame alone, as on any cold replica.
const catchUpWindowBytes = 4 << 20

// catchUpGapBytes is the largest gap between the pull's frames in a
// window that a read reads through. A frame between two of the pull's is
// one a later piece of the pull superseded, which no reader needs; but
// reading one or two (a few KiB at 100 MB/s) costs far less than the
// round trip of a second request. On the fastforward bench (W1), about a
// tenth of a level segment's frames are superseded, scattered: splitting
// at every one of them reads the changed rows in twice as many requests
// as reading them through, for 8% fewer bytes.
const catchUpGapBytes = 8 << 10

// catchUp is what the newest pull changed: its pages, and the segments
// that hold them, with their frames.
type catchUp struct {
	changed *roaring.Bitmap
	segs    map[SegmentID]*manifest.SegmentRef
}

// noteCatchUp remembers what pull m changed, for catchUpWindow.
func (v *Volume) noteCatchUp(m *manifest.Map) {
	if m.IsCheckpoint() || 2*m.Changeset.GetCardinality() >= uint64(m.PageCount) {
		v.catchUp.Store(nil)
		return
	}
	c := &catchUp{changed: m.Changeset, segs: make(map[SegmentID]*manifest.SegmentRef, len(m.Segments))}
	for i := range m.Segments {
		c.segs[m.Segments[i].ID] = &m.Segments[i]
	}
	v.catchUp.Store(c)
}

// catchUpWindow returns the frames to fetch for a read of stub s: the run
// of frames in s's window that holds s's frame, at index at, and the
// window's other runs, to fetch in the background; or s's frame alone
// when s is not a stub the newest pull made.
func (v *Volume) catchUpWindow(s stub) (run []stub, at int, later [][]stub) {
	c := v.catchUp.Load()
	var ref *manifest.SegmentRef
	if c != nil {
		ref = c.segs[s.seg]
	}
	if ref == nil || !c.changed.Contains(uint32(s.frame.First)) {
		return []stub{s}, 0, nil
	}
	lo := s.frame.Offset - s.frame.Offset%catchUpWindowBytes
	i := sort.Search(len(ref.Frames), func(i int) bool { return ref.Frames[i].Offset >= lo })
	var window []stub
	for ; i < len(ref.Frames) && ref.Frames[i].Offset < lo+catchUpWindowBytes; i++ {
		window = append(window, stub{seg: ref.ID, salt: ref.Salt, size: ref.Size, frame: ref.Frames[i]})
	}
	for _, r := range groupRuns(window, catchUpGapBytes) {
		if j := slices.IndexFunc(r, func(o stub) bool { return o.frame.Offset == s.frame.Offset }); j >= 0 {
			run, at = r, j
		} else {
			later = append(later, r)
		}
	}
	if run == nil { // s's frame is not the map's: a stub of another pull
		return []stub{s}, 0, nil
	}
	return run, at, later
}
