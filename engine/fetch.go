package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/segment"
)

// Page values other than images (kind 0):
//
//	kind 1, stub: the image is in the remote, in a segment frame
//	        segment ID (16) | salt (8) | segment size (8) | frame offset (8)
//	        | frame length (4) | frame first page (4) | frame last page (4)
//	kind 2, zero: the page is all zeros
//
// A pull writes stubs; reading a stub fetches its frame with one ranged
// GET, verifies it, and replaces with images the stubs of every page of the
// frame that still point to it.
const (
	pageKindStub byte = 1
	pageKindZero byte = 2
	stubLen           = 1 + 16 + 8 + 8 + 8 + 4 + 4 + 4
)

type stub struct {
	seg   SegmentID
	salt  uint64
	size  int64
	frame segment.Frame
}

func encodeStub(dst []byte, ref manifest.SegmentRef, fr segment.Frame) []byte {
	dst = append(dst, pageKindStub)
	dst = append(dst, ref.ID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, ref.Salt)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ref.Size))
	dst = binary.BigEndian.AppendUint64(dst, uint64(fr.Offset))
	dst = binary.BigEndian.AppendUint32(dst, fr.Length)
	dst = binary.BigEndian.AppendUint32(dst, uint32(fr.First))
	return binary.BigEndian.AppendUint32(dst, uint32(fr.Last))
}

func decodeStub(what string, b []byte) (stub, error) {
	if len(b) != stubLen || b[0] != pageKindStub {
		return stub{}, fmt.Errorf("%w: %s: %d-byte stub", ErrCorrupt, what, len(b))
	}
	var s stub
	copy(s.seg[:], b[1:17])
	s.salt = binary.BigEndian.Uint64(b[17:])
	s.size = int64(binary.BigEndian.Uint64(b[25:]))
	s.frame = segment.Frame{
		Offset: int64(binary.BigEndian.Uint64(b[33:])),
		Length: binary.BigEndian.Uint32(b[41:]),
		First:  PageNo(binary.BigEndian.Uint32(b[45:])),
		Last:   PageNo(binary.BigEndian.Uint32(b[49:])),
	}
	if s.frame.Last < s.frame.First || s.frame.Length < segment.FrameTrailerSize || s.frame.End() > s.size {
		return stub{}, fmt.Errorf("%w: %s: stub frame pages %d..%d at %d+%d in %d bytes", ErrCorrupt, what, s.frame.First, s.frame.Last, s.frame.Offset, s.frame.Length, s.size)
	}
	return s, nil
}

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
		_, val, found, err := v.lookupPage(id, p, ver)
		if err != nil || !found || len(val) != 1+pageSize || val[0] != pageKindImage {
			return false
		}
		img = val[1:]
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
		run, later := []stub{s}, [][]stub(nil)
		if scan {
			run, later = v.readahead(s)
		}
		calls := r.claim(run, false)
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
		v.fetchCurrent(ctx, r, run, calls, pageSize, false)
		cancel()
		return calls[0].pages, calls[0].err
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
	pages, err := v.fetchFrames(ctx, r, run, pageSize)
	for i, c := range calls {
		if c.pages = pages[i]; c.pages == nil {
			c.err = err
		}
	}
	if err := v.storeFrames(run, pages, pageSize); err != nil {
		// The pages are verified; failing to keep them only costs a
		// fetch next time.
		v.e.opts.Logger.Warn("cambium: cannot store fetched pages", "volume", v.name, "err", err)
	}
}

// fetchCurrent fetches, like fetchClaimed, the claimed frames of run that
// still are stubs (unless checkFirst, the first frame is taken to be one:
// its reader has just checked):
// the run was planned from stubs read before its frames were claimed, and
// another fetch may have stored some of them since. Those are released
// with errFrameStored, for their readers to read them locally.
func (v *Volume) fetchCurrent(ctx context.Context, r *replica, run []stub, calls []*fetchCall, pageSize int, checkFirst bool) {
	id := VolumeID(v.id.Load())
	head := v.head.Load().version
	current := make([]bool, len(run))
	for i, s := range run {
		if i == 0 && !checkFirst {
			current[i] = true
			continue
		}
		_, val, found, err := v.lookupPage(id, s.frame.First, head)
		current[i] = err != nil || (found && pointsTo(val, s)) // on error, fetch
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

// fetchFrames reads the frames of run, consecutive in one segment, with
// one ranged GET and returns each frame's verified pages. A frame that
// cannot be had is nil, and err says why.
func (v *Volume) fetchFrames(ctx context.Context, r *replica, run []stub, pageSize int) ([][]byte, error) {
	out := make([][]byte, len(run))
	key := manifest.SegmentKey(v.name, run[0].seg)
	off := run[0].frame.Offset
	data, err := r.store.GetRange(ctx, key, off, run[len(run)-1].frame.End()-off)
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

// Readahead: a scan reads remote pages in page order, so each read of a
// frame in that order fetches more of the frames that follow it: a window
// of frames that grows fourfold with each such read up to maxReadahead,
// read with one ranged GET. Once the window reaches prefetchFrom, the scan
// also fetches in the background, prefetchRuns windows at a time and
// concurrently, the frames ahead of the reader, which waits only for the
// window that holds its page; when the reader reaches those, the next
// prefetchRuns windows start (see noteRead), so that one batch is always on
// its way and a steady scan rarely waits. "In order" steps over pages stored locally, such as
// the b-tree interior pages among the leaves. A read out of order (a
// random read, or an interior page that a scan reads in passing) fetches
// its frame alone and leaves the scan's state as it was; a second read in
// order after it starts a new scan.
const (
	maxReadahead  = 256
	prefetchRuns  = 8
	prefetchFrom  = 64
	readaheadSkip = 16 // pages stored locally that a scan steps over
)

// readaheadState is a volume's readahead state.
type readaheadState struct {
	sync.Mutex
	next      PageNo // the page after the furthest frame the scan has fetched or is fetching
	window    int    // the scan's window, in frames
	candidate PageNo // the page after the last read out of order
	gen       uint64 // counts scans: a fetch ahead of an older one moves nothing

	// A read of a page in [trigger, until) starts the next prefetch.
	trigger, until atomic.Uint32
	extending      atomic.Bool
}

// readahead returns the frames to fetch now for a read of stub s, s's
// first, and runs of frames to fetch ahead of the reader; it starts the
// scan's background prefetch once the window is large enough.
func (v *Volume) readahead(s stub) (now []stub, later [][]stub) {
	ra := &v.ra
	ra.Lock()
	switch s.frame.First {
	case ra.next:
		ra.window = min(ra.window*4, maxReadahead)
	case ra.candidate:
		ra.window, ra.next = 4, 0
		ra.gen++
	default:
		ra.candidate = s.frame.Last + 1
		ra.Unlock()
		return []stub{s}, nil
	}
	window, gen := ra.window, ra.gen
	ra.Unlock()
	runs, next := v.followingRuns(s, window, window, window >= prefetchFrom)
	ra.Lock()
	if ra.gen == gen {
		ra.next = max(ra.next, next)
	}
	ra.Unlock()
	if window >= prefetchFrom {
		v.extendReadahead()
	}
	return runs[0], runs[1:]
}

// noteRead is called for each page read from local storage: a scan's
// read that reaches what was prefetched starts the next prefetch.
func (v *Volume) noteRead(p PageNo) {
	t := v.ra.trigger.Load()
	if t == 0 || uint32(p) < t || uint32(p) >= v.ra.until.Load() || !v.ra.trigger.CompareAndSwap(t, 0) {
		return
	}
	v.extendReadahead()
}

// extendReadahead starts, in the background, the fetch of the next
// prefetchRuns windows of frames after the scan's next page.
func (v *Volume) extendReadahead() {
	ra := &v.ra
	if !ra.extending.CompareAndSwap(false, true) {
		return
	}
	ok := v.e.background(func(context.Context) {
		defer ra.extending.Store(false)
		r, err := v.replica()
		if err != nil {
			return
		}
		ra.Lock()
		ra.window = min(ra.window*4, maxReadahead)
		from, window, gen := ra.next, ra.window, ra.gen
		ra.Unlock()
		s, ok := v.stubFrom(from)
		if !ok {
			return
		}
		runs, next := v.followingRuns(s, window, prefetchRuns*window, true)
		pageSize := int(v.head.Load().pageSize)
		for _, run := range runs {
			v.prefetch(r, run, pageSize)
		}
		ra.Lock()
		if ra.gen == gen && next > ra.next {
			// The reader's entering these frames starts the next
			// prefetch, so that one is always on its way.
			ra.next = next
			ra.until.Store(uint32(next))
			ra.trigger.Store(uint32(runs[0][0].frame.First))
		}
		ra.Unlock()
	})
	if !ok {
		ra.extending.Store(false)
	}
}

// stubFrom returns the stub of page p, or of the first page after it that
// is not stored locally, within readaheadSkip pages.
func (v *Volume) stubFrom(p PageNo) (stub, bool) {
	id := VolumeID(v.id.Load())
	head := v.head.Load().version
	for end := p + readaheadSkip; p <= end; p++ {
		_, val, found, err := v.lookupPage(id, p, head)
		if err != nil || !found {
			return stub{}, false
		}
		if len(val) == stubLen && val[0] == pageKindStub {
			s, err := decodeStub("readahead", val)
			return s, err == nil
		}
	}
	return stub{}, false
}

// followingRuns returns up to n frames, s and those holding the pages
// after it in page order, in runs of at most window consecutive frames of
// one segment, s's run first, and the page a scan reading them would next
// find missing. It stops at the first page stored locally, or, with skip,
// steps over up to readaheadSkip of them in a row (a scan's b-tree
// interior pages, read in passing).
func (v *Volume) followingRuns(s stub, window, n int, skip bool) ([][]stub, PageNo) {
	id := VolumeID(v.id.Load())
	head := v.head.Load().version
	runs := [][]stub{{s}}
	p, frames, skipped := s.frame.Last+1, 1, 0
	for {
		_, val, found, err := v.lookupPage(id, p, head)
		if err != nil || !found {
			break
		}
		if len(val) != stubLen || val[0] != pageKindStub {
			if skipped++; !skip || skipped > readaheadSkip {
				break
			}
			p++
			continue
		}
		skipped = 0
		if frames == n {
			break // p is the next page missing
		}
		next, err := decodeStub("readahead", val)
		if err != nil || next.frame.Last < p {
			break
		}
		p = next.frame.Last + 1
		run := runs[len(runs)-1]
		prev := run[len(run)-1]
		switch {
		case next.seg == prev.seg && next.frame.Offset == prev.frame.Offset:
			continue // another page of the same frame
		case next.seg == prev.seg && next.frame.Offset == prev.frame.End() && len(run) < window:
			runs[len(runs)-1] = append(run, next)
		default:
			if !skip {
				return runs, next.frame.First // not contiguous: the ramp fetches one run
			}
			runs = append(runs, []stub{next})
		}
		frames++
	}
	return runs, p
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
		v.fetchCurrent(ctx, r, run, calls, pageSize, true)
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
// its newest entry if that is such a stub.
func (v *Volume) storeFrames(run []stub, pages [][]byte, pageSize int) error {
	id := VolumeID(v.id.Load())
	v.fetchMu.RLock() // the pruner must not delete a stub we replace
	defer v.fetchMu.RUnlock()
	it, err := v.e.db.NewIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		return err
	}
	defer it.Close()
	b := v.e.db.NewBatch()
	defer b.Close()
	head := v.head.Load().version
	n := 0
	for i, s := range run {
		if pages[i] == nil {
			continue
		}
		for p := s.frame.First; ; p++ {
			if it.SeekGE(pageKey(id, p, head)) {
				if _, q, _, ok := decodePageKey(it.Key()); ok && q == p && pointsTo(it.Value(), s) {
					val := b.SetDeferred(len(it.Key()), 1+pageSize)
					copy(val.Key, it.Key())
					val.Value[0] = pageKindImage
					copy(val.Value[1:], pages[i][int(p-s.frame.First)*pageSize:])
					val.Finish()
					n++
				}
			}
			if p == s.frame.Last {
				break
			}
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	v.stats.pagesFetched.Add(int64(n))
	return nil
}

// pointsTo reports whether page value val is a stub for frame s.
func pointsTo(val []byte, s stub) bool {
	return len(val) == stubLen && val[0] == pageKindStub && bytes.Equal(val[1:17], s.seg[:]) &&
		int64(binary.BigEndian.Uint64(val[33:])) == s.frame.Offset
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
	before := r.store.Stats()
	pagesBefore := v.stats.pagesFetched.Load()
	framesBefore := v.stats.framesFetched.Load()

	// Group by segment, order by offset, and cut into runs.
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
			stubs[j].frame.Offset-stubs[j-1].frame.End() <= hydrateGapBytes &&
			stubs[j].frame.End()-stubs[i].frame.Offset <= hydrateRunBytes {
			j++
		}
		runs = append(runs, stubs[i:j])
		i = j
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	sem := make(chan struct{}, hydrateConcurrency)
	for _, run := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := v.fetchRun(ctx, r, run, snap.PageSize()); err != nil {
				errMu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	st := r.store.Stats().Sub(before)
	res := HydrateResult{
		Pages:     int(v.stats.pagesFetched.Load() - pagesBefore),
		Frames:    int(v.stats.framesFetched.Load() - framesBefore),
		Requests:  st.Requests(),
		BytesRead: st.BytesRead(),
	}
	if first != nil {
		return res, fmt.Errorf("hydrate %q: %w", v.name, first)
	}
	return res, nil
}

// fetchRun reads the frames of run, which lie in one segment in offset
// order, with one ranged GET, and stores their pages.
func (v *Volume) fetchRun(ctx context.Context, r *replica, run []stub, pageSize int) error {
	pages, err := v.fetchFrames(ctx, r, run, pageSize)
	if err != nil {
		return err
	}
	return v.storeFrames(run, pages, pageSize)
}

// stubsAt returns the stubs that snap's pages read: every page whose
// newest entry at or before snap's version is a stub.
func (v *Volume) stubsAt(snap *Snapshot) ([]stub, error) {
	id := VolumeID(v.id.Load())
	if id == 0 {
		return nil, nil
	}
	it, err := v.e.db.NewIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
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
		if val := it.Value(); len(val) > 0 && val[0] == pageKindStub && !snap.st.cutOff(p, u, ver) {
			s, err := decodeStub(fmt.Sprintf("page %d of %q at version %d", p, v.name, u), val)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		p++
	}
	return out, it.Error()
}
