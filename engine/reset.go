package engine

import (
	"context"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
)

// ResetResult describes one Reset.
// Its JSON, the result of PRAGMA cambium_reset and of cambium reset --json,
// is discarded beside the pull's keys.
type ResetResult struct {
	Discarded  Version `json:"discarded"` // local versions thrown away: those after From
	PullResult         // the pull that followed
}

// Reset discards the volume's local versions that are not in the remote
// (all of them after the newest pushed version), clears the diverged
// state, and pulls: the volume then follows the remote. Snapshots of
// discarded versions must be released first (ErrBusy otherwise), and no
// write transaction may be open.
//
// Connections of this process that cached pages of a discarded version
// must not trust their cache: Lineage changes, which the SQLite file layer
// turns into a change SQLite notices.
func (v *Volume) Reset(ctx context.Context) (ResetResult, error) {
	if v.cv != nil {
		return clientCall(v, "reset", nil, nil, func(lv *Volume) (ResetResult, error) { return lv.Reset(ctx) })
	}
	r, err := v.replicaToWrite()
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset %q: %w", v.name, err)
	}
	v.pushMu.Lock()
	res, err := v.discardUnpushed()
	v.pushMu.Unlock()
	if err != nil {
		return res, fmt.Errorf("reset %q: %w", v.name, err)
	}
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	op := r.op()
	res.PullResult, err = v.pull(ctx, op)
	st := op.store.Stats()
	res.PullResult.Requests, res.PullResult.BytesRead = st.Requests(), st.BytesRead()
	if err != nil {
		return res, fmt.Errorf("reset %q: pull: %w", v.name, err)
	}
	return res, nil
}

// Lineage returns a number that changes whenever Reset replaces versions
// this process may have read with other ones.
func (v *Volume) Lineage() uint64 {
	if v.cv != nil {
		return v.cv.lineageNow()
	}
	return v.lineage.Load()
}

// discardUnpushed moves the volume's head back to its newest pushed
// version, deleting the versions after it, and clears the diverged state.
//
// Snapshot must never wait for it, so its reads and its log write happen
// outside v.mu; under v.mu it only checks that no snapshot pins a discarded
// version and publishes the older head, before the batch that deletes the
// discarded versions is applied. That order is safe: a snapshot of the
// pushed version reads the same images whether or not the newer ones are
// still stored (every read seeks the newest at or before its version), and
// the writer and pushMu, held here, keep anything else from moving the
// head meanwhile. A failure to apply the batch stops the engine's writes,
// as a failed commit does.
func (v *Volume) discardUnpushed() (ResetResult, error) {
	id := VolumeID(v.id.Load())
	rec := *v.replState.Load()
	if id == 0 {
		return ResetResult{}, nil
	}
	if !v.takeWriter() {
		return ResetResult{}, fmt.Errorf("%w: a write transaction is open", ErrBusy)
	}
	defer v.releaseWriter()
	head := v.head.Load()
	res := ResetResult{Discarded: head.version - rec.pushed}
	if head.version == rec.pushed && !rec.diverged && len(rec.pending) == 0 {
		return res, nil
	}
	b := v.e.db.NewBatch()
	defer b.Close()
	var freed int64
	baseCount, baseSize, err := v.batchDiscard(b, id, rec.pushed, head, &freed)
	if err != nil {
		return res, err
	}
	rec.diverged, rec.pending = false, nil
	if err := b.Set(replKey(id), rec.encode(), nil); err != nil {
		return res, err
	}

	v.mu.Lock()
	for ver := range v.mu.pins {
		if ver > rec.pushed {
			v.mu.Unlock()
			return res, fmt.Errorf("%w: a connection still reads version %d, which reset discards; end its transaction (or close it) first", ErrBusy, ver)
		}
	}
	// From here on no snapshot can pin a discarded version.
	v.committing.Store(uint64(rec.pushed))
	v.cacheGen.Add(1)
	v.head.Store(v.successorLocked(head, rec.pushed, baseCount, baseSize))
	v.movedLocked(change{version: rec.pushed, shrink: -1})
	v.forgetSupersededLocked(rec.pushed)
	v.replState.Store(&rec)
	v.lineage.Add(1)
	v.mu.Unlock()
	v.e.cache.dropVolume(v)

	if err := v.e.clog.Write(b, logEntry(id, rec.pushed, head.version), true); err != nil {
		return res, v.e.fail(fmt.Errorf("reset %q: %w", v.name, err))
	}
	if v.e.budget != nil {
		v.e.budget.add(-freed)
	}
	return res, nil
}

// batchDiscard adds to b the deletion of the versions after pushed, up to
// head, and the head record of pushed, and returns pushed's page count and
// page size.
//
// With a budget, it adds to *freed the bytes of the images it deletes.
func (v *Volume) batchDiscard(b *pebble.Batch, id VolumeID, pushed Version, head *state, freed *int64) (pageCount, pageSize uint32, err error) {
	pageCount, pageSize = head.pageCount, head.pageSize
	err = v.e.forCommits(id, pushed+1, head.version, func(ver Version, c commitRecord, parentCount uint32) error {
		if ver == pushed+1 {
			pageCount = parentCount
		}
		for p := range roaring.Values(c.changeset) {
			k := pageKey(id, PageNo(p), ver)
			if v.e.budget != nil {
				// Local versions: no fetch or eviction writes their keys.
				n, _, _, err := v.e.storedUsage([][]byte{k})
				if err != nil {
					return err
				}
				*freed += n
			}
			if err := b.Delete(k, nil); err != nil {
				return err
			}
		}
		return b.Delete(commitKey(id, ver), nil)
	})
	if err != nil {
		return 0, 0, err
	}
	if pushed == 0 {
		pageCount, pageSize = 0, 0
	}
	return pageCount, pageSize, b.Set(headKey(id), headRecord{version: pushed, pageCount: pageCount, pageSize: pageSize}.encode(), nil)
}
