package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

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

func encodeStub(dst []byte, ref segmentRef, fr segment.Frame) []byte {
	dst = append(dst, pageKindStub)
	dst = append(dst, ref.id[:]...)
	dst = binary.BigEndian.AppendUint64(dst, ref.salt)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ref.size))
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
	if s.frame.Last < s.frame.First || s.frame.End() > s.size {
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
}

// pageFromFrame fetches the frame s names (sharing the request with any
// other reader of the same frame) and returns page p's image.
func (v *Volume) pageFromFrame(s stub, p PageNo, pageSize int) ([]byte, error) {
	r, err := v.replica()
	if err != nil {
		return nil, fmt.Errorf("page %d of %q is in the remote (segment %s): %w", p, v.name, s.seg, ErrNoRemote)
	}
	var pages []byte
	if run := v.readahead(s); len(run) > 1 {
		ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
		pages, err = v.fetchRun(ctx, r, run, pageSize)
		cancel()
	} else {
		pages, err = v.fetchFrame(r, s, pageSize)
	}
	if err != nil {
		return nil, err
	}
	at := int(p-s.frame.First) * pageSize
	return pages[at : at+pageSize], nil
}

// maxReadahead bounds the frames one sequential read fetches.
const maxReadahead = 256

// readahead returns the frames to fetch for a read of stub s: s's alone,
// or, when reads of remote pages run in page order (a scan), s's and the
// frames that follow it in its segment holding the next pages, a window
// that doubles with each sequential read up to maxReadahead frames, all
// fetched with one ranged GET.
func (v *Volume) readahead(s stub) []stub {
	v.ra.Lock()
	if s.frame.First == v.ra.next {
		v.ra.window = min(max(v.ra.window*2, 2), maxReadahead)
	} else {
		v.ra.window = 1
	}
	window := v.ra.window
	v.ra.next = s.frame.Last + 1
	v.ra.Unlock()
	run := []stub{s}
	if window == 1 {
		return run
	}
	id := VolumeID(v.id.Load())
	head := v.head.Load().version
	for len(run) < window {
		last := run[len(run)-1]
		_, val, found, err := v.lookupPage(id, last.frame.Last+1, head)
		if err != nil || !found || len(val) != stubLen || val[0] != pageKindStub {
			break
		}
		next, err := decodeStub("readahead", val)
		if err != nil || next.seg != s.seg || next.frame.Offset != last.frame.End() {
			break
		}
		run = append(run, next)
	}
	v.ra.Lock()
	v.ra.next = run[len(run)-1].frame.Last + 1
	v.ra.Unlock()
	return run
}

// fetchFrame returns the decoded pages of the frame s names, fetching it
// once however many readers ask at the same time, and stores its pages
// locally.
func (v *Volume) fetchFrame(r *replica, s stub, pageSize int) ([]byte, error) {
	k := frameKey{s.seg, s.frame.Offset}
	r.mu.Lock()
	if c, ok := r.fetches[k]; ok {
		r.mu.Unlock()
		<-c.done
		return c.pages, c.err
	}
	c := &fetchCall{done: make(chan struct{})}
	r.fetches[k] = c
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.fetches, k)
		r.mu.Unlock()
		close(c.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	key := remoteSegmentKey(v.name, s.seg)
	data, err := r.store.GetRange(ctx, key, s.frame.Offset, int64(s.frame.Length))
	if err != nil {
		c.err = fmt.Errorf("fetch pages %d..%d of %q from %s: %w", s.frame.First, s.frame.Last, v.name, key, err)
		return nil, c.err
	}
	c.pages, c.err = decodeStubFrame(key, s, pageSize, data)
	if c.err != nil {
		return nil, c.err
	}
	v.stats.framesFetched.Add(1)
	if err := v.storeFrame(s, pageSize, c.pages); err != nil {
		// The pages are verified; failing to keep them only costs a
		// fetch next time.
		v.e.opts.Logger.Warn("cambium: cannot store fetched pages", "volume", v.name, "err", err)
	}
	return c.pages, nil
}

func decodeStubFrame(key string, s stub, pageSize int, data []byte) ([]byte, error) {
	f := segment.Footer{PageSize: pageSize, Salt: s.salt, Frames: []segment.Frame{s.frame}}
	pages, err := f.DecodeFrame(0, data, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s, frame of pages %d..%d at offset %d: %v", ErrRemoteCorrupt, key, s.frame.First, s.frame.Last, s.frame.Offset, err)
	}
	return pages, nil
}

// storeFrame replaces with images the stubs that point to frame s: for
// each page of the frame, its newest entry if that is such a stub.
func (v *Volume) storeFrame(s stub, pageSize int, pages []byte) error {
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
	val := make([]byte, 1+pageSize)
	val[0] = pageKindImage
	n := 0
	for p := s.frame.First; ; p++ {
		if it.SeekGE(pageKey(id, p, head)) {
			if _, q, _, ok := decodePageKey(it.Key()); ok && q == p && pointsTo(it.Value(), s) {
				copy(val[1:], pages[int(p-s.frame.First)*pageSize:])
				if err := b.Set(bytes.Clone(it.Key()), val, nil); err != nil {
					return err
				}
				n++
			}
		}
		if p == s.frame.Last {
			break
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
type HydrateResult struct {
	Pages     int   // pages downloaded and stored
	Frames    int   // frames fetched
	Requests  int64 // ranged GETs made
	BytesRead int64
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
			if _, err := v.fetchRun(ctx, r, run, snap.PageSize()); err != nil {
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
// order, with one ranged GET, stores their pages, and returns the pages of
// the first frame.
func (v *Volume) fetchRun(ctx context.Context, r *replica, run []stub, pageSize int) ([]byte, error) {
	key := remoteSegmentKey(v.name, run[0].seg)
	off := run[0].frame.Offset
	data, err := r.store.GetRange(ctx, key, off, run[len(run)-1].frame.End()-off)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", key, err)
	}
	var first []byte
	for i, s := range run {
		lo := s.frame.Offset - off
		if int64(len(data)) < lo+int64(s.frame.Length) {
			return nil, fmt.Errorf("%w: %s: short read (%d bytes) at offset %d", ErrRemoteCorrupt, key, len(data), off)
		}
		pages, err := decodeStubFrame(key, s, pageSize, data[lo:lo+int64(s.frame.Length)])
		if err != nil {
			return nil, err
		}
		if i == 0 {
			first = pages
		}
		v.stats.framesFetched.Add(1)
		if err := v.storeFrame(s, pageSize, pages); err != nil {
			return nil, err
		}
	}
	return first, nil
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
