package engine

import (
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
)

// The pruner deletes page images that no snapshot can see any more. For a
// volume whose oldest pinned snapshot (or, with none pinned, newest
// version) is H, it walks the commits after the last pruned one up to H.
// Commit c writing page p makes every older image of p invisible to
// snapshots at or after c, and all live snapshots are at or after H >= c;
// a truncation at c does the same for the pages it cut off.

// pruneBatchCommits bounds the commits one prune step handles, so that one
// busy volume does not hold up the rest.
const pruneBatchCommits = 256

func (e *Engine) kickPruner() {
	defer func() { _ = recover() }() // the channel is closed once the engine is
	select {
	case e.pruneKick <- struct{}{}:
	default:
	}
}

func (e *Engine) pruneLoop() {
	defer close(e.pruneDone)
	for range e.pruneKick {
		for {
			more, err := e.pruneAll()
			if err != nil {
				e.opts.Logger.Error("cambium: pruning old page versions failed; will retry after the next commit", "dir", e.dir, "err", err)
				break
			}
			if !more {
				break
			}
		}
	}
}

// pruneAll runs one prune step on every open volume; more reports whether
// any has work left.
func (e *Engine) pruneAll() (more bool, err error) {
	e.mu.Lock()
	vols := make([]*Volume, 0, len(e.mu.volumes))
	for _, v := range e.mu.volumes {
		vols = append(vols, v)
	}
	e.mu.Unlock()
	for _, v := range vols {
		m, err := v.pruneStep()
		if err != nil {
			return false, err
		}
		more = more || m
	}
	return more, nil
}

// horizon returns the oldest version a live snapshot may read.
func (v *Volume) horizonLocked() Version {
	h := v.head.Load().version
	for ver := range v.mu.pins {
		h = min(h, ver)
	}
	return h
}

// pruneStep prunes up to pruneBatchCommits commits of the volume.
func (v *Volume) pruneStep() (more bool, err error) {
	id := VolumeID(v.id.Load())
	if id == 0 {
		return false, nil
	}
	v.mu.Lock()
	from, to := v.mu.prunedThrough+1, v.horizonLocked()
	v.mu.Unlock()
	if from > to {
		return false, nil
	}
	if to-from+1 > pruneBatchCommits {
		to, more = from+pruneBatchCommits-1, true
	}
	b := v.e.db.NewBatch()
	defer b.Close()
	err = v.e.forCommits(id, from, to, func(c Version, rec commitRecord, parentCount uint32) error {
		for p := range roaring.Values(rec.changeset) {
			// Images of p older than c: keys from (p, ^(c-1)) to the end of p.
			if err := b.DeleteRange(pageKey(id, PageNo(p), c-1), pagePrefixEnd(id, PageNo(p)), nil); err != nil {
				return err
			}
		}
		if rec.pageCount < parentCount {
			return v.pruneCutOff(b, id, c, rec.pageCount, parentCount)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("prune %q through %d: %w", v.name, to, err)
	}
	if err := b.Set(prunedKey(id), encodePrunedRecord(to), nil); err != nil {
		return false, err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return false, fmt.Errorf("prune %q through %d: %w", v.name, to, err)
	}
	v.mu.Lock()
	v.mu.prunedThrough = to
	v.mu.Unlock()
	return more, nil
}

// pruneCutOff deletes the images older than c of pages n+1..m, which a
// truncation at c cut off.
func (v *Volume) pruneCutOff(b *pebble.Batch, id VolumeID, c Version, n, m uint32) error {
	it, err := v.e.db.NewIter(&pebble.IterOptions{
		LowerBound: pageKey(id, PageNo(n+1), ^Version(0)),
		UpperBound: pagePrefixEnd(id, PageNo(m)),
	})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if _, _, u, ok := decodePageKey(it.Key()); ok && u < c {
			if err := b.Delete(append([]byte(nil), it.Key()...), nil); err != nil {
				return err
			}
		}
	}
	return it.Error()
}
