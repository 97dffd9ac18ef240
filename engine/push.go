package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/cambiumdb/cambium/engine/internal/commitlog"
	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/segment"
)

// tagRepl keys a volume's replication record (see replRecord).
const tagRepl byte = 0x08

func replKey(id VolumeID) []byte { return idKey(tagRepl, id) }

// maxSegmentBytes bounds a segment a push builds in memory; a push that
// changed more uploads several. (A variable for tests that need several
// segments of a small volume.)
var maxSegmentBytes = 32 << 20

// PushResult describes one Push.
// Its JSON is the result of PRAGMA cambium_push and of cambium push --json.
type PushResult struct {
	From         Version `json:"from"`                 // the remote moved from version From
	To           Version `json:"to"`                   // to To; equal when there was nothing to push
	Pages        int     `json:"pages"`                // pages uploaded
	Segments     int     `json:"segments"`             // segments uploaded
	Requests     int64   `json:"remote_requests"`      // object store requests made
	BytesWritten int64   `json:"remote_bytes_written"` // payload bytes uploaded
	// LevelBytes is the part of BytesWritten that went to level segments
	// (see writeRollups): the write amplification of rollups.
	LevelBytes int64 `json:"level_bytes_written"`
}

// Push uploads the volume's commits that the remote does not have yet as
// one remote commit: segments holding the newest image of every page they
// changed, then a commit claiming the successor of the newest pushed
// version, then the rollups that commit completes. It is safe to retry
// after any error, and after a crash: a push whose claim may not have
// happened is claimed again with the same bytes, so the remote gets neither
// a duplicate nor a gap. If another writer claimed that version first, the
// volume becomes diverged (ErrDiverged): its local commits are kept, the
// remote is not touched, and writes are refused until Reset. Pushes and
// pulls of one volume are serialised.
func (v *Volume) Push(ctx context.Context) (PushResult, error) {
	if v.cv != nil {
		return clientCall(v, "push", nil, nil, func(lv *Volume) (PushResult, error) { return lv.Push(ctx) })
	}
	r, err := v.replicaToWrite()
	if err != nil {
		return PushResult{}, fmt.Errorf("push %q: %w", v.name, err)
	}
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	op := r.op()
	res, err := v.push(ctx, op)
	st := op.store.Stats()
	res.Requests, res.BytesWritten, res.LevelBytes = st.Requests(), st.BytesWritten(), op.levelBytes.Load()
	return res, err
}

func (v *Volume) push(ctx context.Context, r remoteOp) (PushResult, error) {
	id := VolumeID(v.id.Load())
	if id == 0 {
		return PushResult{}, nil // never committed: nothing to push
	}
	rec := *v.replState.Load()
	if rec.diverged {
		return PushResult{From: rec.pushed, To: rec.pushed}, v.divergedError(rec.pushed)
	}
	if len(rec.pending) > 0 {
		// A push whose claim may not have happened: finish it first.
		m, err := decodePendingMap("pending push of "+v.name, rec.pending)
		if err != nil {
			return PushResult{}, err
		}
		stale, err := v.pendingCollected(ctx, r, m)
		if err != nil {
			return PushResult{From: rec.pushed, To: rec.pushed}, err
		}
		if stale {
			// Its segments were collected while it waited: push afresh.
			rec.pending = nil
			if err := v.saveRepl(id, rec); err != nil {
				return PushResult{}, err
			}
		} else if err := v.claimVersion(ctx, r, id, &rec, m, nil); err != nil {
			return PushResult{From: rec.pushed, To: rec.pushed}, err
		}
	}

	snap := v.Snapshot()
	defer snap.Release()
	from, to := rec.pushed, snap.Version()
	res := PushResult{From: from, To: from}
	if to <= from {
		return res, nil
	}
	pages, minCount, newest, err := v.pagesChanged(id, from, snap)
	if err != nil {
		return res, err
	}
	m := &manifest.Map{
		FromSeq:   rec.seq,
		ToSeq:     rec.seq + 1,
		Parent:    uint64(from),
		Version:   uint64(to),
		PageCount: snap.PageCount(),
		PageSize:  uint32(snap.PageSize()),
		MinCount:  minCount,
		Time:      newest, // when the version was committed, for restores by time
		Changeset: pages,
	}
	if m.Segments, err = v.uploadSegments(ctx, r, snap, pages); err != nil {
		return res, err
	}
	if rec.pending, err = m.Encode(); err != nil {
		return res, err
	}
	rec.url = r.url
	// Remember the claim before making it, so that a retry after a lost
	// response or a crash makes exactly the same one.
	if err := v.saveRepl(id, rec); err != nil {
		return res, err
	}
	if err := v.claimVersion(ctx, r, id, &rec, m, snap); err != nil {
		return res, err
	}
	if err := v.notePushed(id, m, snap.st); err != nil {
		// The images stay; only the budget cannot evict them.
		v.e.opts.Logger.Warn("cambium: cannot record where pushed pages are in the remote; they will not be evicted", "volume", v.name, "err", err)
	}
	res.To, res.Pages, res.Segments = to, int(pages.GetCardinality()), len(m.Segments)
	return res, nil
}

// notePushed writes the location records of the images that remote commit
// m, claimed, uploaded from st (at m's version): for each page m changed
// that has an image written after m's parent and visible at st, the frame
// that holds it, so that the budget may evict it (budget.go). They go
// through the commit log, so that they survive the process being killed.
func (v *Volume) notePushed(id VolumeID, m *manifest.Map, st *state) error {
	it, err := v.e.db.NewIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		return err
	}
	defer it.Close()
	b := v.e.db.NewBatch()
	defer b.Close()
	var n int64
	var loc []byte
	for p := range roaring.Values(m.Changeset) {
		if !it.SeekGE(pageKey(id, PageNo(p), st.version)) {
			break
		}
		_, q, u, ok := decodePageKey(it.Key())
		if !ok || q != PageNo(p) || u <= Version(m.Parent) || st.cutOff(q, u, st.version) || imageBytes(it.Value()) == 0 {
			continue
		}
		ref, fr, zero, ok := m.Locate(q)
		if !ok || zero {
			continue
		}
		loc = encodeStub(loc[:0], *ref, fr)
		if err := b.Set(locationKey(id, q, u), loc, nil); err != nil {
			return err
		}
		n++
	}
	if err := it.Error(); err != nil || n == 0 {
		return err
	}
	// Through the commit log, as the push's replication record: a process
	// killed now must not forget which of its images are safe.
	if err := v.e.clog.Write(b, commitlog.Entry{}, false); err != nil {
		return v.e.fail(fmt.Errorf("record where the pages pushed to version %d of %q are: %w", m.Version, v.name, err))
	}
	v.e.notePagesStored(0, n, 0)
	return nil
}

// uploadSegments writes the images at snap of pages as segments of at most
// about maxSegmentBytes each and returns their references.
func (v *Volume) uploadSegments(ctx context.Context, r remoteOp, snap *Snapshot, pages *roaring.Bitmap) ([]manifest.SegmentRef, error) {
	return v.uploadImages(ctx, r, snap.PageSize(), func(fn func(PageNo, []byte) error) error {
		return v.imagesAt(r.replica, snap.st, pages, fn)
	})
}

// uploadImages writes the images images yields, in ascending page order
// and pageSize bytes each, as segments of at most about maxSegmentBytes
// each and returns their references.
func (v *Volume) uploadImages(ctx context.Context, r remoteOp, pageSize int, images func(fn func(PageNo, []byte) error) error) ([]manifest.SegmentRef, error) {
	var (
		refs []manifest.SegmentRef
		buf  bytes.Buffer
		w    *segment.Writer
		err  error
	)
	flush := func() error {
		footer, err := w.Finish()
		if err != nil {
			return err
		}
		id, err := manifest.NewSegmentID()
		if err != nil {
			return err
		}
		if err := r.store.Put(ctx, manifest.SegmentKey(v.name, id), buf.Bytes()); err != nil {
			return fmt.Errorf("upload segment: %w", err)
		}
		refs = append(refs, manifest.SegmentRef{ID: id, Salt: footer.Salt, Size: footer.Size, Pages: footer.Pages, Frames: footer.Frames})
		w = nil
		return nil
	}
	err = images(func(p PageNo, img []byte) error {
		if w == nil {
			buf.Reset()
			var err error
			if w, err = segment.NewWriter(&buf, pageSize, segment.Options{}); err != nil {
				return err
			}
		}
		if err := w.Add(p, img); err != nil {
			return err
		}
		if buf.Len() >= maxSegmentBytes {
			return flush()
		}
		return nil
	})
	if err == nil && w != nil {
		err = flush()
	}
	if err != nil {
		return nil, fmt.Errorf("push %q: %w", v.name, err)
	}
	return refs, nil
}

// claimVersion creates the remote commit rec.pending holds and, once the remote
// has it, records the push as done and writes the rollups it completes
// (with their level segments when snap, the version m ends, is at hand).
func (v *Volume) claimVersion(ctx context.Context, r remoteOp, id VolumeID, rec *replRecord, m *manifest.Map, snap *Snapshot) error {
	key := manifest.CommitKey(v.name, m.Parent)
	err := r.store.Create(ctx, key, rec.pending)
	if errors.Is(err, remote.ErrExists) {
		// Either our own earlier claim whose response was lost, or another
		// writer's: only the bytes tell.
		existing, gerr := r.store.Get(ctx, key)
		if gerr != nil {
			return fmt.Errorf("push %q: read back %s: %w", v.name, key, gerr)
		}
		if !bytes.Equal(existing, rec.pending) {
			// Only another writer's valid commit proves divergence: bytes
			// that fail their checks may be a bad read of our own, so the
			// claim stays pending and a retry reads again.
			other, derr := decodeRemoteMap(key, existing)
			if derr != nil {
				return fmt.Errorf("push %q: read back: %w", v.name, derr)
			}
			rec.pending, rec.diverged = nil, true
			rec.remoteVersion = max(rec.remoteVersion, Version(other.Version))
			if serr := v.saveRepl(id, *rec); serr != nil {
				return serr
			}
			return v.divergedError(Version(m.Parent))
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("push %q: claim version %d: %w", v.name, m.Version, err)
	}
	prevParent := rec.lastParent
	rec.pushed, rec.seq, rec.lastParent, rec.pending, rec.pushedHere = Version(m.Version), m.ToSeq, Version(m.Parent), nil, true
	rec.remoteVersion = max(rec.remoteVersion, Version(m.Version))
	if err := v.saveRepl(id, *rec); err != nil {
		return err
	}
	v.writeRollups(ctx, r, m, prevParent, snap)
	return nil
}

// writeRollups writes the rollups that commit m completes: for each level
// L where m ends a block of 2^(L+1) commits, the merge of the block's two
// halves. The pusher keeps the left halves it will need in memory and
// reads them back from the remote after a restart. Rollups only save
// readers requests, so a failure here is logged, not returned.
//
// A rollup of a level levelSegmentAt chooses also gets a level segment,
// when snap (at m's version) is given: the images of every
// page the block changed, at its end, densely in page order, so that a
// reader catching up k commits finds the pages they changed in O(log k)
// segments and reads runs of them with one ranged read each. A page
// written in several commits of the block is uploaded once more per such
// level: with levels 2, 5, 8..., a push's pages are uploaded about
// 1+log2(k)/3 times over k commits (less when commits rewrite the same
// pages), the write amplification the bench reports.
func (v *Volume) writeRollups(ctx context.Context, r remoteOp, m *manifest.Map, prevParent Version, snap *Snapshot) {
	carry, n := m, m.ToSeq
	var l uint8
	warn := func(err error) {
		v.e.opts.Logger.Warn("cambium: cannot write a rollup; readers will read its parts instead", "volume", v.name, "level", l+1, "start", n-1<<(l+1), "err", err)
	}
	for ; l < manifest.MaxRollupLevel && n%(1<<(l+1)) == 0; l++ {
		start := n - 1<<(l+1)
		left := r.levels[l]
		if left == nil || left.FromSeq != start || left.ToSeq != start+1<<l {
			if s, ok := r.collected[l]; ok && s == start {
				break // the collector deleted the left half: readers read the parts
			}
			var key string
			if l == 0 {
				key = manifest.CommitKey(v.name, uint64(prevParent))
			} else {
				key = manifest.RollupKey(v.name, l, start)
			}
			raw, err := r.store.Get(ctx, key)
			if err == nil {
				left, err = decodeRemoteMap(key, raw)
			}
			if err != nil {
				warn(err)
				break
			}
		}
		merged, err := mergeMaps(left, carry)
		// A block that changed half the volume or more (an import, a
		// VACUUM) is read whole by a catch-up anyway, from segments
		// dense already: a level segment would upload it again for
		// nothing.
		if err == nil && snap != nil && levelSegmentAt(l+1) && 2*merged.Changeset.GetCardinality() < uint64(merged.PageCount) {
			err = v.levelSegment(ctx, r, merged, snap)
		}
		if err == nil {
			merged.Level = l + 1
			var raw []byte
			if raw, err = merged.Encode(); err == nil {
				// Never replaced: a reader may have read the first one's
				// level segment, which the collector knows through it.
				err = r.store.Create(ctx, manifest.RollupKey(v.name, l+1, start), raw)
				if errors.Is(err, remote.ErrExists) {
					err = nil
				}
			}
		}
		if err != nil {
			warn(err)
			break
		}
		carry = merged
	}
	r.levels[l] = carry
}

// levelSegmentAt says which rollup levels get a level segment: 2, 5, 8,
// 11... On the fastforward bench (1,000 commits pushed one by one, then a
// replica reads every changed row), levels 4, 8, 12 left the changed pages
// in 55 segments and the reads took 136 requests, for pushes uploading
// about 2.9 times what they committed; levels 2, 5, 8 leave them in 29
// segments, for about 3.9 times. Between two levels with segments a piece
// reads at most 4 of the level below.
func levelSegmentAt(level uint8) bool { return level%3 == 2 }

// levelSegment uploads the images at snap (the version rollup m ends at)
// of every page m changed, as segments, and makes m read them.
func (v *Volume) levelSegment(ctx context.Context, r remoteOp, m *manifest.Map, snap *Snapshot) error {
	if Version(m.Version) != snap.Version() {
		return fmt.Errorf("level segment of versions %d..%d from a snapshot of version %d", m.Parent, m.Version, snap.Version())
	}
	refs, err := v.uploadSegments(ctx, r, snap, m.Changeset)
	if err != nil {
		return err
	}
	m.Segments = refs
	for _, ref := range refs {
		r.levelBytes.Add(ref.Size)
	}
	return nil
}

func (v *Volume) divergedError(pushed Version) error {
	head, _, _ := v.Head()
	return fmt.Errorf("%q: %w: another writer claimed the version after %d in the remote; this volume's local versions %d..%d are kept but cannot be pushed, and writes are refused. PRAGMA cambium_reset (Volume.Reset) discards them and follows the remote",
		v.name, ErrDiverged, pushed, pushed+1, head)
}

// imagesAt calls fn with the image as of st of each page of pages, in page
// order, read from Pebble with one iterator rather than through
// Snapshot.ReadPage: a push is no reader, so it counts no page reads,
// fills no page cache and moves no readahead. img is valid until fn
// returns. A page whose image is only in the remote (a push sends what was
// committed locally, so there should be none) is fetched as a read would,
// frame alone. The caller keeps st pinned.
func (v *Volume) imagesAt(r *replica, st *state, pages *roaring.Bitmap, fn func(p PageNo, img []byte) error) error {
	id := VolumeID(v.id.Load())
	it, err := v.e.newIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		return err
	}
	defer it.Close()
	pageSize := int(st.pageSize)
	zeros := make([]byte, pageSize)
	for p := range roaring.Values(pages) {
		img := zeros // no image at or before st, or one a truncation cut off
		if it.SeekGE(pageKey(id, PageNo(p), st.version)) {
			_, q, u, ok := decodePageKey(it.Key())
			if !ok {
				return fmt.Errorf("%w: page key %x", ErrCorrupt, it.Key())
			}
			if q == PageNo(p) && !st.cutOff(q, u, st.version) {
				pv, err := decodePageValue(pageAt{v.name, q, u}, it.Value(), pageSize)
				if err != nil {
					return err
				}
				switch pv.kind {
				case pageImage:
					img = pv.image
				case pageStub:
					frame, err := v.fetchFrame(r, pv.stub, pageSize)
					switch {
					case errors.Is(err, remote.ErrNotFound):
						// Collected since it was pulled: the remote's
						// kept maps name the image elsewhere.
						if img, err = v.resolveCollected(pv.stub, q, u, st.version, pageSize, err); err != nil {
							return err
						}
					case err != nil:
						return err
					default:
						at := int(q-pv.stub.frame.First) * pageSize
						img = frame[at : at+pageSize]
					}
				}
			}
		}
		if err := it.Error(); err != nil {
			return v.e.readError(fmt.Sprintf("read page %d of %q", p, v.name), err)
		}
		if err := fn(PageNo(p), img); err != nil {
			return err
		}
	}
	return nil
}

// pagesChanged returns the pages whose image at snap differs, or may
// differ, from the one at version from: those the commits after it wrote,
// and every page above the smallest page count in between (a truncation
// followed by growth leaves zeros where nothing was written). minCount is
// that smallest page count, from's included; newest is when snap's version
// was committed.
func (v *Volume) pagesChanged(id VolumeID, from Version, snap *Snapshot) (pages *roaring.Bitmap, minCount uint32, newest time.Time, err error) {
	pages = roaring.New()
	first := true
	size, err := v.pageSizeAt(id, from)
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("push %q: %w", v.name, err)
	}
	from0 := size
	resized := false
	err = v.e.forCommits(id, from+1, snap.Version(), func(_ Version, c commitRecord, parentCount uint32) error {
		if first {
			minCount, first = parentCount, false
		}
		resized = resized || (size != 0 && c.pageSize != size)
		size = c.pageSize
		pages.Or(c.changeset)
		newest = c.time
		minCount = min(minCount, c.pageCount)
		return nil
	})
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("push %q: %w", v.name, err)
	}
	n := snap.PageCount()
	minCount = min(minCount, n)
	if minCount < n {
		pages.AddRange(uint64(minCount)+1, uint64(n)+1)
	}
	if n < 1<<32-1 {
		pages.RemoveRange(uint64(n)+1, 1<<32)
	}
	if resized {
		// A commit of the range changed the page size, and so rewrote
		// every page (Txn.SetPageSize): the map says so with a minimum
		// page count of 0, which lets a reader of the old size take it.
		if pages.GetCardinality() != uint64(n) {
			return nil, 0, time.Time{}, fmt.Errorf("push %q: %w: versions %d..%d change the page size from %d to %d but rewrite %d of %d pages",
				v.name, ErrCorrupt, from+1, snap.Version(), from0, snap.PageSize(), pages.GetCardinality(), n)
		}
		minCount = 0
	}
	pages.RunOptimize()
	return pages, minCount, newest, nil
}

// pageSizeAt returns the page size of version ver (0 for version 0 or a
// version whose record is pruned).
func (v *Volume) pageSizeAt(id VolumeID, ver Version) (uint32, error) {
	if ver == 0 {
		return 0, nil
	}
	raw, found, err := v.e.get(commitKey(id, ver))
	if err != nil || !found {
		return 0, err
	}
	c, err := decodeCommitRecord(fmt.Sprintf("commit record %d of %q", ver, v.name), raw)
	return c.pageSize, err
}

func (v *Volume) loadRepl(id VolumeID) (replRecord, error) {
	raw, found, err := v.e.get(replKey(id))
	if err != nil || !found {
		return replRecord{}, err
	}
	return decodeReplRecord(fmt.Sprintf("replication record of %q", v.name), raw)
}

// saveRepl writes rec durably (a claim must not be forgotten) and makes it
// the volume's current replication state.
func (v *Volume) saveRepl(id VolumeID, rec replRecord) error {
	if err := v.e.writable(); err != nil {
		return fmt.Errorf("save replication state of %q: %w", v.name, err)
	}
	b := v.e.db.NewBatch()
	defer b.Close()
	if err := b.Set(replKey(id), rec.encode(), nil); err != nil {
		return err
	}
	if err := v.e.clog.Write(b, commitlog.Entry{}, true); err != nil {
		return v.e.fail(fmt.Errorf("save replication state of %q: %w", v.name, err))
	}
	v.replState.Store(&rec)
	return nil
}

// ReplicationState is what a volume knows of its remote.
type ReplicationState struct {
	Remote        string  // URL of the remote the volume follows ("" if none)
	Pushed        Version // newest local version known to be in the remote
	RemoteVersion Version // newest remote version seen by the last push, pull or fetch
	Diverged      bool    // another writer claimed the version after Pushed
}

// Replication returns the volume's replication state.
func (v *Volume) Replication() ReplicationState {
	if v.cv != nil {
		r, _ := clientCall(v, "replication", nil, nil, func(lv *Volume) (ReplicationState, error) { return lv.Replication(), nil })
		return r
	}
	rec := v.replState.Load()
	url := rec.url
	if r := v.attached.Load(); r != nil {
		url = r.url
	}
	return ReplicationState{Remote: url, Pushed: rec.pushed, RemoteVersion: rec.remoteVersion, Diverged: rec.diverged}
}

// pendingCollected reports whether pending push m must be made afresh: it
// was not claimed, and a garbage collector has since deleted one of its
// segments (a push that waited longer than the collector's minimum age,
// say across a long outage). Claiming it would name objects that are gone.
func (v *Volume) pendingCollected(ctx context.Context, r remoteOp, m *manifest.Map) (bool, error) {
	for _, ref := range m.Segments {
		_, err := r.store.Size(ctx, manifest.SegmentKey(v.name, ref.ID))
		if errors.Is(err, remote.ErrNotFound) {
			// Claimed after all (the response was lost), or not.
			_, err := r.store.Size(ctx, manifest.CommitKey(v.name, m.Parent))
			if errors.Is(err, remote.ErrNotFound) {
				return true, nil
			}
			if err != nil {
				return false, fmt.Errorf("push %q: check %s: %w", v.name, manifest.CommitKey(v.name, m.Parent), err)
			}
			return false, nil // claimVersion compares the bytes
		}
		if err != nil {
			return false, fmt.Errorf("push %q: check the pending push's segments: %w", v.name, err)
		}
	}
	return false, nil
}
