package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/segment"
)

// tagPush keys a volume's push record (see pushRecord).
const tagPush byte = 0x08

func pushKey(id VolumeID) []byte { return idKey(tagPush, id) }

// PushResult describes one Push.
type PushResult struct {
	From, To     Version // the remote moved from version From to To; equal when there was nothing to push
	Pages        int     // pages uploaded
	Requests     int64   // object store requests made
	BytesWritten int64   // payload bytes uploaded
}

// Push uploads the volume's commits that the remote does not have yet as
// one remote commit: a segment holding the newest image of every page they
// changed, then a record claiming the successor of the newest pushed
// version. It is safe to retry after any error, and after a crash: a push
// whose claim may not have happened is claimed again with the same bytes,
// so the remote gets neither a duplicate nor a gap. If another writer
// claimed that version first, Push returns ErrDiverged and changes nothing,
// locally or remotely. Pushes of one volume are serialised.
func (v *Volume) Push(ctx context.Context, store remote.Store) (PushResult, error) {
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	counted := remote.NewCountingStore(store)
	res, err := v.push(ctx, counted)
	st := counted.Stats()
	res.Requests, res.BytesWritten = st.Requests(), st.BytesWritten()
	return res, err
}

func (v *Volume) push(ctx context.Context, store remote.Store) (PushResult, error) {
	id := VolumeID(v.id.Load())
	if id == 0 {
		return PushResult{}, nil // never committed: nothing to push
	}
	rec, err := v.loadPushRecord(id)
	if err != nil {
		return PushResult{}, err
	}
	if rec.diverged {
		return PushResult{From: rec.pushed, To: rec.pushed}, v.divergedError(rec.pushed)
	}
	if len(rec.pending) > 0 {
		// A push whose claim may not have happened: finish it first.
		c, err := decodeRemoteCommit("pending push", rec.pending)
		if err != nil {
			return PushResult{}, err
		}
		if err := v.claim(ctx, store, id, &rec, c); err != nil {
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
	pages, err := v.pagesChanged(id, from, snap)
	if err != nil {
		return res, err
	}
	seg, err := buildSegment(snap, pages)
	if err != nil {
		return res, fmt.Errorf("push %q: %w", v.name, err)
	}
	segID, err := newSegmentID()
	if err != nil {
		return res, err
	}
	if err := store.Put(ctx, remoteSegmentKey(v.name, segID), seg); err != nil {
		return res, fmt.Errorf("push %q: upload segment: %w", v.name, err)
	}
	c := remoteCommit{
		parent:      from,
		version:     to,
		pageCount:   snap.PageCount(),
		pageSize:    uint32(snap.PageSize()),
		time:        time.Now(),
		segment:     segID,
		segmentSize: int64(len(seg)),
		changeset:   pages,
	}
	if rec.pending, err = c.encode(); err != nil {
		return res, err
	}
	// Remember the claim before making it, so that a retry after a lost
	// response or a crash makes exactly the same one.
	if err := v.savePushRecord(id, rec); err != nil {
		return res, err
	}
	if err := v.claim(ctx, store, id, &rec, c); err != nil {
		return res, err
	}
	res.To, res.Pages = to, int(pages.GetCardinality())
	return res, nil
}

// claim creates the remote commit record rec.pending describes and, once
// the remote has it, records the push as done.
func (v *Volume) claim(ctx context.Context, store remote.Store, id VolumeID, rec *pushRecord, c remoteCommit) error {
	key := remoteCommitKey(v.name, c.parent)
	err := store.Create(ctx, key, rec.pending)
	if errors.Is(err, remote.ErrExists) {
		// Either our own earlier claim whose response was lost, or another
		// writer's: only the bytes tell.
		existing, gerr := store.Get(ctx, key)
		if gerr != nil {
			return fmt.Errorf("push %q: read back %s: %w", v.name, key, gerr)
		}
		if !bytes.Equal(existing, rec.pending) {
			rec.pending, rec.diverged = nil, true
			if serr := v.savePushRecord(id, *rec); serr != nil {
				return serr
			}
			return v.divergedError(c.parent)
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("push %q: claim version %d: %w", v.name, c.version, err)
	}
	rec.pushed, rec.pending = c.version, nil
	return v.savePushRecord(id, *rec)
}

func (v *Volume) divergedError(pushed Version) error {
	head, _, _ := v.Head()
	return fmt.Errorf("push %q: %w: another writer claimed the version after %d in the remote; this volume's local versions %d..%d are kept but cannot be pushed",
		v.name, ErrDiverged, pushed, pushed+1, head)
}

// pagesChanged returns the pages whose image at snap differs, or may
// differ, from the one at version from: those the commits after it wrote,
// and those a truncation among them cut off that snap has again.
func (v *Volume) pagesChanged(id VolumeID, from Version, snap *Snapshot) (*roaring.Bitmap, error) {
	pages := roaring.New()
	first := true
	var fromCount, minCount uint32
	err := v.e.forCommits(id, from+1, snap.Version(), func(_ Version, c commitRecord, parentCount uint32) error {
		if first {
			fromCount, minCount, first = parentCount, parentCount, false
		}
		pages.Or(c.changeset)
		minCount = min(minCount, c.pageCount)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("push %q: %w", v.name, err)
	}
	if hi := min(fromCount, snap.PageCount()); minCount < hi {
		pages.AddRange(uint64(minCount)+1, uint64(hi)+1)
	}
	if n := snap.PageCount(); n < 1<<32-1 {
		pages.RemoveRange(uint64(n)+1, 1<<32)
	}
	pages.RunOptimize()
	return pages, nil
}

// buildSegment writes the images at snap of the given pages as a segment.
// It holds the whole segment in memory.
func buildSegment(snap *Snapshot, pages *roaring.Bitmap) ([]byte, error) {
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, snap.PageSize(), segment.Options{})
	if err != nil {
		return nil, err
	}
	var page []byte
	for p := range roaring.Values(pages) {
		if page, err = snap.ReadPage(PageNo(p), page[:0]); err != nil {
			return nil, err
		}
		if err := w.Add(PageNo(p), page); err != nil {
			return nil, err
		}
	}
	if _, err := w.Finish(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (v *Volume) loadPushRecord(id VolumeID) (pushRecord, error) {
	raw, found, err := v.e.get(pushKey(id))
	if err != nil || !found {
		return pushRecord{}, err
	}
	return decodePushRecord(fmt.Sprintf("push record of %q", v.name), raw)
}

// savePushRecord writes rec durably: a claim must not be forgotten.
func (v *Volume) savePushRecord(id VolumeID, rec pushRecord) error {
	v.e.durable.Add(1)
	defer v.e.durable.Add(-1)
	if err := v.e.db.Set(pushKey(id), rec.encode(), pebble.Sync); err != nil {
		return v.e.fail(fmt.Errorf("save push state of %q: %w", v.name, err))
	}
	return nil
}

// Replication returns the newest local version known to be in the remote,
// and whether the volume has diverged from it.
func (v *Volume) Replication() (pushed Version, diverged bool, err error) {
	id := VolumeID(v.id.Load())
	if id == 0 {
		return 0, false, nil
	}
	rec, err := v.loadPushRecord(id)
	return rec.pushed, rec.diverged, err
}
