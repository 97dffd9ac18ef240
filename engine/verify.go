package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/segment"
)

// VerifyOptions configure Verify. The zero value checks local data only.
type VerifyOptions struct {
	// Remote also checks the volume's remote (it must be attached): every
	// commit and rollup object, the footer of every segment the remote's
	// newest version reads from, and every frame of those segments that
	// the version reads, each fetched and checked against its checksum.
	Remote bool
	// Progress, if set, is called as the check proceeds, one call at a
	// time: stage "pages" counts the local pages of the newest version,
	// stage "frames" the remote frames.
	Progress func(stage string, done, total int64)
	// MaxProblems bounds how many problems Verify describes (default 100);
	// it counts them all.
	MaxProblems int
}

// VerifyResult is what Verify checked and found.
type VerifyResult struct {
	// Version is the local version checked (the newest), of Pages pages:
	// LocalPages stored here as images, each read from disk (so the
	// store verified the checksum of its block); ZeroPages all zeros
	// (nothing stored); RemotePages known only by where their image lives
	// in the remote (checked with VerifyOptions.Remote).
	Version                                   Version
	Pages, LocalPages, ZeroPages, RemotePages int
	// Commits counts the local commit records checked.
	Commits int

	// RemoteVersion is the remote's newest version, whose frames were
	// checked: Frames of them passed (FrameBytes bytes), from Segments
	// segments.
	// RemoteObjects counts the commits and rollups read and checked.
	RemoteVersion                   Version
	RemoteObjects, Segments, Frames int
	FrameBytes                      int64

	// Problems describes what is wrong, one line each, at most
	// VerifyOptions.MaxProblems of them; ProblemCount counts them all.
	Problems     []string
	ProblemCount int
}

// OK reports whether Verify found nothing wrong.
func (r *VerifyResult) OK() bool { return r.ProblemCount == 0 }

// Verify checks the volume's newest version by reading all of it: the
// local commit log (each record's checksum and the chain of versions), and
// every page stored locally, straight from disk rather than through the
// page cache, so that the store verifies the checksum of every block that
// holds one. With opts.Remote it then checks the remote (see VerifyOptions)
// without storing anything it reads.
//
// Damage is reported in the result, one problem per damaged record, page,
// object or frame, and the check goes on past it; the error is for a check
// that could not run (no remote attached, a cancelled context, a listing
// that failed). Verify changes nothing.
func (v *Volume) Verify(ctx context.Context, opts VerifyOptions) (VerifyResult, error) {
	if v.cv != nil {
		return clientCall(v, "verify", verifyArgs{opts.Remote, opts.MaxProblems}, func(b []byte) {
			var p verifyProgress
			if opts.Progress != nil && json.Unmarshal(b, &p) == nil {
				opts.Progress(p.Stage, p.Done, p.Total)
			}
		}, func(lv *Volume) (VerifyResult, error) { return lv.Verify(ctx, opts) })
	}
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = 100
	}
	var res VerifyResult
	var mu sync.Mutex
	add := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		res.ProblemCount++
		if len(res.Problems) < opts.MaxProblems {
			res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
		}
	}
	progress := func(stage string, done, total int64) {
		if opts.Progress != nil {
			mu.Lock()
			opts.Progress(stage, done, total)
			mu.Unlock()
		}
	}
	var r *replica
	if opts.Remote {
		var err error
		if r, err = v.replica(); err != nil {
			return res, fmt.Errorf("verify %q: %w", v.name, err)
		}
	}
	if err := v.verifyLocal(ctx, &res, add, progress); err != nil {
		return res, fmt.Errorf("verify %q: %w", v.name, err)
	}
	if r != nil {
		if err := v.verifyRemote(ctx, r.op(), &res, add, progress); err != nil {
			return res, fmt.Errorf("verify %q: %w", v.name, err)
		}
	}
	return res, nil
}

func (v *Volume) verifyLocal(ctx context.Context, res *VerifyResult, add func(string, ...any), progress func(string, int64, int64)) error {
	snap := v.Snapshot() // pinned: the pruner keeps every image it reads
	defer snap.Release()
	st := snap.st
	res.Version, res.Pages = st.version, int(st.pageCount)
	id := VolumeID(v.id.Load())
	if id == 0 {
		res.ZeroPages = res.Pages
		return nil
	}
	from, err := v.e.historyStart(id)
	if err == nil {
		err = v.e.forCommits(id, from, st.version, func(Version, commitRecord, uint32) error {
			res.Commits++
			return nil
		})
	}
	if err != nil {
		add("local commit log: %v", err)
	}

	var it *pebble.Iterator
	defer func() {
		if it != nil {
			it.Close()
		}
	}()
	total := int64(st.pageCount)
	for n := int64(1); n <= total; n++ {
		p := PageNo(n)
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			progress("pages", n, total)
		}
		q, u, val, found, err := v.seekForVerify(&it, id, p, st.version)
		switch {
		case err != nil:
			add("page %d: %v", p, err)
			continue
		case !found:
			// No entry for any page from p on: all zeros.
			res.ZeroPages += int(total - n + 1)
			n = total
			continue
		case q != p:
			// No entry for pages p..q-1.
			skip := min(int64(q), total+1) - n
			res.ZeroPages += int(skip)
			n += skip - 1
			continue
		case st.cutOff(p, u, st.version):
			res.ZeroPages++
			continue
		}
		pv, err := decodePageValue(pageAt{p: p, u: u}, val, int(st.pageSize))
		switch {
		case err != nil:
			add("%v", err)
		case pv.kind == pageImage:
			res.LocalPages++
		case pv.kind == pageZero:
			res.ZeroPages++
		case pv.kind == pageStub:
			res.RemotePages++
		}
	}
	progress("pages", total, total)
	return nil
}

// seekForVerify finds the newest entry of page p at or before version ver,
// or of the first page after p that has one (q is its page). A store that
// fails, or panics, reading it gives an error, and the iterator is
// replaced, so that the next page is read afresh.
func (v *Volume) seekForVerify(it **pebble.Iterator, id VolumeID, p PageNo, ver Version) (q PageNo, u Version, val []byte, found bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			// Pebble reports on-disk corruption to its logger as fatal,
			// which the engine's logger turns into a panic: make it this
			// page's error, and read the next page with a new iterator.
			func() {
				defer func() { _ = recover() }()
				(*it).Close()
			}()
			*it = nil
			msg, _, _ := strings.Cut(fmt.Sprint(r), "\n")
			err = fmt.Errorf("%w: %s", ErrCorrupt, msg)
		}
	}()
	if *it == nil {
		if *it, err = v.e.newIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)}); err != nil {
			*it = nil
			return 0, 0, nil, false, err
		}
	}
	if !(*it).SeekGE(pageKey(id, p, ver)) {
		if err := (*it).Error(); err != nil {
			(*it).Close()
			*it = nil
			return 0, 0, nil, false, err
		}
		return 0, 0, nil, false, nil
	}
	_, q, u, ok := decodePageKey((*it).Key())
	if !ok {
		return 0, 0, nil, false, fmt.Errorf("%w: page key %x", ErrCorrupt, (*it).Key())
	}
	if q == p && u > ver {
		// SeekGE lands at or after (p, ver): an entry of p is never newer.
		return 0, 0, nil, false, fmt.Errorf("%w: page key %x sorts wrong", ErrCorrupt, (*it).Key())
	}
	val, err = (*it).ValueAndErr()
	if err != nil {
		(*it).Close()
		*it = nil
		return 0, 0, nil, false, err
	}
	return q, u, append([]byte(nil), val...), true, nil
}

// verifyRemote checks the remote's log up to its newest version, its
// rollups, and the segments and frames that version reads.
func (v *Volume) verifyRemote(ctx context.Context, r remoteOp, res *VerifyResult, add func(string, ...any), progress func(string, int64, int64)) error {
	parents, err := v.listCommits(ctx, r, 0)
	var gap *historyGap
	if errors.As(err, &gap) {
		// Collected history: the commits start with the one ending at
		// the oldest checkpoint, which the merge starts from.
		parents, err = gap.parents, nil
	}
	if err != nil {
		if errors.Is(err, ErrRemoteCorrupt) {
			add("remote log: %v", err)
			return nil
		}
		return err
	}
	pushed := v.replState.Load().pushed
	if len(parents) == 0 {
		if pushed > 0 {
			add("the remote has no commits of %q, yet this volume pushed version %d to it", v.name, pushed)
		}
		return nil
	}
	// Read every commit, not the rollups a pull would, so that each is
	// checked; merged, they are the full page map of the newest version.
	var m *manifest.Map
	seq := uint64(0) // of the commit before parents[0]'s
	for i, parent := range parents {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := manifest.CommitKey(v.name, uint64(parent))
		raw, err := r.store.Get(ctx, key)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			add("remote commit %s: %v", key, err)
			break
		}
		res.RemoteObjects++
		c, err := decodeRemoteMap(key, raw)
		if err == nil && i == 0 && gap != nil {
			// Only its end is kept: read the checkpoint there instead.
			seq = c.FromSeq
			if c, err = v.readCheckpoint(ctx, r, Version(c.Version)); err == nil {
				res.RemoteObjects++
			}
		} else if err == nil && (c.Level != 0 || Version(c.Parent) != parent || c.FromSeq != seq+uint64(i)) {
			err = fmt.Errorf("it is commit %d (level %d) from version %d, want commit %d from %d", c.ToSeq, c.Level, c.Parent, seq+uint64(i)+1, parent)
		}
		if err == nil && m != nil {
			c, err = mergeMaps(m, c)
		}
		if err != nil {
			add("remote commit %s: %v (versions after %d cannot be read)", key, err, parent)
			break
		}
		m = c
	}
	if m == nil {
		return nil
	}
	res.RemoteVersion = Version(m.Version)
	if pushed > res.RemoteVersion {
		add("the remote's log ends at version %d, but this volume pushed version %d to it", m.Version, pushed)
	}

	if err := v.verifyRollups(ctx, r, res, add); err != nil {
		return err
	}

	// Segments: the footer of each, then its frames in coalesced ranged
	// reads, a few at a time.
	type run struct {
		ref    *manifest.SegmentRef
		frames []segment.Frame
	}
	var runs []run
	total := int64(0)
	for i := range m.Segments {
		ref := &m.Segments[i]
		total += int64(len(ref.Frames))
		for j := 0; j < len(ref.Frames); {
			k := j + 1
			for k < len(ref.Frames) &&
				ref.Frames[k].Offset-ref.Frames[k-1].End() <= hydrateGapBytes &&
				ref.Frames[k].End()-ref.Frames[j].Offset <= hydrateRunBytes {
				k++
			}
			runs = append(runs, run{ref: ref, frames: ref.Frames[j:k]})
			j = k
		}
	}
	res.Segments = len(m.Segments)
	for i := range m.Segments {
		if err := ctx.Err(); err != nil {
			return err
		}
		v.verifyFooter(ctx, r, &m.Segments[i], add)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		done   int64
		frames int
		bytes  int64
	)
	progress("frames", 0, total)
	sem := make(chan struct{}, hydrateConcurrency)
	for _, rn := range runs {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			key := manifest.SegmentKey(v.name, rn.ref.ID)
			off := rn.frames[0].Offset
			length := rn.frames[len(rn.frames)-1].End() - off
			data, err := r.store.GetRange(ctx, key, off, length)
			ok, n := 0, int64(0)
			if err != nil {
				if ctx.Err() == nil {
					add("segment %s: read %d bytes at offset %d (pages %d..%d): %v", key, length, off, rn.frames[0].First, rn.frames[len(rn.frames)-1].Last, err)
				}
			} else {
				f := segment.Footer{PageSize: int(m.PageSize), Salt: rn.ref.Salt, Frames: rn.frames}
				for i, fr := range rn.frames {
					lo := fr.Offset - off
					if int64(len(data)) < lo+int64(fr.Length) {
						add("segment %s: frame of pages %d..%d at offset %d: the object ends at %d", key, fr.First, fr.Last, fr.Offset, off+int64(len(data)))
						continue
					}
					if _, err := f.DecodeFrame(i, data[lo:lo+int64(fr.Length)], nil); err != nil {
						add("segment %s: frame of pages %d..%d at offset %d: %v", key, fr.First, fr.Last, fr.Offset, err)
						continue
					}
					ok++
					n += int64(fr.Length)
				}
			}
			mu.Lock()
			frames += ok
			bytes += n
			done += int64(len(rn.frames))
			d := done
			mu.Unlock()
			progress("frames", d, total)
		}()
	}
	wg.Wait()
	res.Frames, res.FrameBytes = frames, bytes
	return ctx.Err()
}

// verifyRollups reads every rollup of the volume and checks it against its
// key. A bad rollup costs readers requests, not data (they read the parts
// it merges instead), but it is damage all the same.
func (v *Volume) verifyRollups(ctx context.Context, r remoteOp, res *VerifyResult, add func(string, ...any)) error {
	objs, err := remote.ListAll(ctx, r.store, manifest.RollupPrefix(v.name))
	if err != nil {
		return fmt.Errorf("list rollups: %w", err)
	}
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
		volume, level, start, ok := manifest.ParseRollupKey(o.Key)
		if !ok || volume != v.name {
			add("remote object %s: not a rollup key", o.Key)
			continue
		}
		raw, err := r.store.Get(ctx, o.Key)
		if err != nil {
			add("remote rollup %s: %v", o.Key, err)
			continue
		}
		res.RemoteObjects++
		m, err := decodeRemoteMap(o.Key, raw)
		if err == nil && (m.Level != level || m.FromSeq != start) {
			err = fmt.Errorf("it covers commits %d..%d at level %d", m.FromSeq+1, m.ToSeq, m.Level)
		}
		if err != nil {
			add("remote rollup %s: %v (readers read the commits it merges instead)", o.Key, err)
		}
	}
	return nil
}

// verifyFooter reads a segment's footer and checks that it agrees with
// what the map says of the segment.
func (v *Volume) verifyFooter(ctx context.Context, r remoteOp, ref *manifest.SegmentRef, add func(string, ...any)) {
	key := manifest.SegmentKey(v.name, ref.ID)
	f, err := segment.ReadFooter(storeReaderAt{ctx: ctx, s: r.store, key: key}, ref.Size)
	if err != nil {
		if size, serr := r.store.Size(ctx, key); serr == nil && size != ref.Size {
			err = fmt.Errorf("%d bytes, the commit says %d", size, ref.Size)
		}
		add("segment %s: footer: %v", key, err)
		return
	}
	if f.Salt != ref.Salt {
		add("segment %s: salt %016x, the commit says %016x", key, f.Salt, ref.Salt)
	}
	if !ref.Pages.IsEmpty() {
		missing := ref.Pages.Clone()
		missing.AndNot(f.Pages)
		if !missing.IsEmpty() {
			add("segment %s: lacks %d pages the commit takes from it (first %d)", key, missing.GetCardinality(), missing.Minimum())
		}
	}
	for _, fr := range ref.Frames {
		i, err := f.FrameIndex(fr.First)
		if err != nil || f.Frames[i] != fr {
			add("segment %s: frame of pages %d..%d at offset %d is not in its footer", key, fr.First, fr.Last, fr.Offset)
			return
		}
	}
}

// storeReaderAt reads one object through ranged GETs.
type storeReaderAt struct {
	ctx context.Context
	s   remote.Store
	key string
}

func (r storeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	b, err := r.s.GetRange(r.ctx, r.key, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	n := copy(p, b)
	if n < len(p) {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}
