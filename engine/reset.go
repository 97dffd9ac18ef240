package engine

import (
	"context"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
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
	r, err := v.replica()
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
	before := r.store.Stats()
	res.PullResult, err = v.pull(ctx, r)
	st := r.store.Stats().Sub(before)
	res.PullResult.Requests, res.PullResult.BytesRead = st.Requests(), st.BytesRead()
	if err != nil {
		return res, fmt.Errorf("reset %q: pull: %w", v.name, err)
	}
	return res, nil
}

// Lineage returns a number that changes whenever Reset replaces versions
// this process may have read with other ones.
func (v *Volume) Lineage() uint64 { return v.lineage.Load() }

func (v *Volume) discardUnpushed() (ResetResult, error) {
	id := VolumeID(v.id.Load())
	rec := *v.repl.Load()
	if id == 0 {
		return ResetResult{}, nil
	}
	if !v.writer.TryLock() {
		return ResetResult{}, fmt.Errorf("%w: a write transaction is open", ErrBusy)
	}
	v.writing.Store(true)
	defer func() {
		v.writing.Store(false)
		v.writer.Unlock()
	}()
	head := v.head.Load()
	res := ResetResult{Discarded: head.version - rec.pushed}
	if head.version == rec.pushed && !rec.diverged && len(rec.pending) == 0 {
		return res, nil
	}
	v.mu.Lock()
	for ver := range v.mu.pins {
		if ver > rec.pushed {
			v.mu.Unlock()
			return res, fmt.Errorf("%w: a connection still reads version %d, which reset discards; end its transaction (or close it) first", ErrBusy, ver)
		}
	}
	// No snapshot can pin a discarded version from here on: the head
	// moves back under v.mu below, before it is released.
	b := v.e.db.NewBatch()
	defer b.Close()
	baseCount, baseSize := head.pageCount, head.pageSize
	err := v.e.forCommits(id, rec.pushed+1, head.version, func(ver Version, c commitRecord, parentCount uint32) error {
		if ver == rec.pushed+1 {
			baseCount = parentCount
		}
		for p := range roaring.Values(c.changeset) {
			if err := b.Delete(pageKey(id, PageNo(p), ver), nil); err != nil {
				return err
			}
		}
		return b.Delete(commitKey(id, ver), nil)
	})
	if err != nil {
		v.mu.Unlock()
		return res, err
	}
	if rec.pushed == 0 {
		baseCount, baseSize = 0, 0
	}
	if err := b.Set(headKey(id), headRecord{version: rec.pushed, pageCount: baseCount, pageSize: baseSize}.encode(), nil); err != nil {
		v.mu.Unlock()
		return res, err
	}
	rec.diverged, rec.pending = false, nil
	if err := b.Set(replKey(id), rec.encode(), nil); err != nil {
		v.mu.Unlock()
		return res, err
	}
	err = v.e.clog.Write(b, logEntry(id, rec.pushed, head.version), true)
	if err != nil {
		v.mu.Unlock()
		return res, v.e.fail(fmt.Errorf("reset %q: %w", v.name, err))
	}
	next := &state{version: rec.pushed, pageCount: baseCount, pageSize: baseSize}
	for _, sh := range head.shrinks {
		if sh.version <= rec.pushed && sh.version > v.mu.prunedThrough {
			next.shrinks = append(next.shrinks, sh)
		}
	}
	v.committing.Store(uint64(rec.pushed))
	v.cacheGen.Add(1)
	v.head.Store(next)
	v.forgetSupersededLocked(rec.pushed)
	v.repl.Store(&rec)
	v.lineage.Add(1)
	v.mu.Unlock()
	v.e.cache.dropVolume(v)
	return res, nil
}
