package engine

import (
	"fmt"
	"time"

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
// busy volume does not hold up the rest; pruneMinCommits is how many
// commits must be prunable before a step runs, so that pruning costs one
// batch per many commits rather than a second write per commit. Garbage
// waits at most that many commits per volume.
const (
	pruneBatchCommits = 256
	pruneMinCommits   = 64
)

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

// horizonLocked returns the oldest version the pruner must keep readable:
// that of the oldest live snapshot, and, for a volume that replicates, the
// newest pushed version, which Reset may return to.
func (v *Volume) horizonLocked() Version {
	h := v.head.Load().version
	for ver := range v.mu.pins {
		h = min(h, ver)
	}
	if rec := v.replState.Load(); rec.url != "" || v.attached.Load() != nil {
		h = min(h, rec.pushed)
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
	if from > to || to-from+1 < pruneMinCommits {
		return false, nil
	}
	if to-from+1 > pruneBatchCommits {
		// A pulled commit covers several versions: end the step where a
		// commit ends, for forCommits.
		end, err := v.e.commitEndingAtOrAfter(id, from+pruneBatchCommits-1, to)
		if err != nil {
			return false, err
		}
		to, more = end, end < to
	}
	// Claim the range: from here on SnapshotAt pins no version below to,
	// and a pin made since the horizon was read is seen now.
	v.mu.Lock()
	if v.horizonLocked() < to {
		v.mu.Unlock()
		return false, nil // its release kicks the pruner again
	}
	v.mu.pruning = to
	prevs := v.supersededLocked(from, to)
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.mu.pruning = 0
		v.mu.Unlock()
	}()
	b := v.e.db.NewBatch()
	defer b.Close()
	it, err := v.e.newIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		return false, err
	}
	defer it.Close()
	// Every image of a page older than the step's range was pruned down to
	// one, the newest, by earlier steps; the images inside the range are
	// the commits that wrote the page. So the pruner deletes by exact key
	// and never walks over the tombstones earlier steps left (which a hot
	// page piles up, one per commit, until Pebble compacts them away).
	// The image older than the range is the one the page's first commit
	// in the range superseded: prevs has it when that commit knew it, and
	// the pruner seeks it otherwise (a seek that may read a table block
	// from disk for each page).
	written := map[PageNo]Version{} // the newest image of a page in from..c
	olderDone := roaring.New()      // pages whose image older than from is deleted
	var deleted [][]byte            // the page keys deleted, with a budget (budget.go)
	del := func(p PageNo, u Version) error {
		k := pageKey(id, p, u)
		if v.e.budget != nil {
			deleted = append(deleted, k)
		}
		if err := b.Delete(k, nil); err != nil {
			return err
		}
		return b.Delete(locationKey(id, p, u), nil)
	}
	dropOlder := func(p PageNo, prev Version) error {
		if u, ok := written[p]; ok {
			delete(written, p)
			if err := del(p, u); err != nil {
				return err
			}
		}
		if !olderDone.CheckedAdd(uint32(p)) {
			return nil
		}
		switch prev {
		case supersededNone:
			return nil
		case 0:
			if it.SeekGE(pageKey(id, p, from-1)) {
				if _, q, u, ok := decodePageKey(it.Key()); ok && q == p && u < from {
					if err := del(q, u); err != nil {
						return err
					}
				}
			}
			return it.Error()
		default:
			return del(p, prev)
		}
	}
	err = v.e.forCommits(id, from, to, func(c Version, rec commitRecord, parentCount uint32) error {
		for p := range roaring.Values(rec.changeset) {
			if err := dropOlder(PageNo(p), prevs[PageNo(p)]); err != nil {
				return err
			}
			written[PageNo(p)] = c
		}
		// A truncation hides every older image of the pages it cut off.
		for p := uint64(rec.pageCount) + 1; p <= uint64(parentCount); p++ {
			if err := dropOlder(PageNo(p), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("prune %q through %d: %w", v.name, to, err)
	}
	if err := b.Set(prunedKey(id), encodePrunedRecord(to), nil); err != nil {
		return false, err
	}
	v.e.evictMu.Lock() // no eviction writes a stub where this batch deletes an image
	v.fetchMu.Lock()   // no fetched frame replaces a stub this batch deletes
	var freed int64
	var stubs, locs int64
	if len(deleted) > 0 {
		freed, stubs, locs, err = v.e.storedUsage(deleted)
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	v.fetchMu.Unlock()
	v.e.evictMu.Unlock()
	if err != nil {
		return false, fmt.Errorf("prune %q through %d: %w", v.name, to, err)
	}
	if v.e.budget != nil {
		v.e.budget.add(-freed)
		v.e.budget.addMeta(-stubs, -locs)
	}
	v.mu.Lock()
	v.mu.prunedThrough = to
	v.dropSupersededLocked(to)
	v.mu.Unlock()
	if err := v.pruneHistory(id, time.Now()); err != nil {
		return false, fmt.Errorf("prune the history of %q: %w", v.name, err)
	}
	return more, nil
}

// SetRetain sets the volume's retention window: the local records of
// commits made longer than d ago are deleted (the oldest kept one
// excepted, and never one the pruner or an unfinished push still needs),
// so that a long-lived data directory holds its live pages and the
// window's history, not every commit it ever made. RetainForever keeps
// them all; the default is DefaultRetain. The remote's history is the
// garbage collector's (GC).
func (v *Volume) SetRetain(d time.Duration) {
	if v.cv != nil {
		clientCall(v, "set_retain", d, nil, func(lv *Volume) (struct{}, error) { lv.SetRetain(d); return struct{}{}, nil })
		return
	}
	v.retain.Store(int64(d))
}

// pruneHistory deletes the commit records of versions older than the
// newest one committed before the retention window, up to the pruner's
// progress and, for a volume that replicates, the newest pushed version:
// the records from those on are read by the pruner, by pushes and by
// resets. It skips a turn when a push, pull or reset runs (they hold
// pushMu, which Log also holds while it reads the records).
func (v *Volume) pruneHistory(id VolumeID, now time.Time) error {
	retain := time.Duration(v.retain.Load())
	if retain < 0 || !v.pushMu.TryLock() {
		return nil
	}
	defer v.pushMu.Unlock()
	v.mu.Lock()
	limit := v.mu.prunedThrough
	v.mu.Unlock()
	if rec := v.replState.Load(); rec.url != "" || v.attached.Load() != nil {
		limit = min(limit, rec.pushed)
	}
	cutoff := now.Add(-retain)
	it, err := v.e.newIter(&pebble.IterOptions{LowerBound: commitKey(id, 0), UpperBound: commitKey(id, limit+1)})
	if err != nil {
		return err
	}
	defer it.Close()
	// cut is the newest record before the window: it stays, to start the
	// kept history.
	var cut Version
	for it.First(); it.Valid(); it.Next() {
		if len(it.Key()) != 17 {
			return fmt.Errorf("%w: commit key %x", ErrCorrupt, it.Key())
		}
		ver := Version(beUint64(it.Key()[9:17]))
		c, err := decodeCommitRecord(fmt.Sprintf("commit record %d of %q", ver, v.name), it.Value())
		if err != nil {
			return err
		}
		if !c.time.Before(cutoff) {
			break
		}
		cut = ver
	}
	if err := it.Error(); err != nil {
		return err
	}
	first, ok, err := v.e.firstCommit(id)
	if err != nil || !ok || cut <= first {
		return err
	}
	return v.e.db.DeleteRange(commitKey(id, 0), commitKey(id, cut), pebble.NoSync)
}

// supersession says which image of page the commit of version superseded:
// the one written at prev, none (supersededNone: the page was new), or
// one the commit did not know (0).
type supersession struct {
	version Version
	page    PageNo
	prev    Version
}

const supersededNone = ^Version(0)

// maxSuperseded bounds a volume's list of supersessions (24 bytes each,
// at most 1.5 MiB). A commit that would pass it empties the list instead,
// and the pruner seeks the images it would have named, which may read a
// table block from disk for each: a pruner that falls behind a busy
// writer (it runs beside it, and applies the commits it prunes first)
// then falls further behind. 4,096, some 1,400 commits of three pages,
// was passed in a few seconds of small commits on two busy cores.
const maxSuperseded = 1 << 16

// noteSupersededLocked adds the supersessions of the commit of version
// ver, one for each page it changed. The caller holds v.mu.
func (v *Volume) noteSupersededLocked(ver Version, ss []supersession) {
	if len(v.mu.superseded)+len(ss) > maxSuperseded {
		v.mu.superseded, v.mu.supersededFrom = nil, ver+1
		return
	}
	v.mu.superseded = append(v.mu.superseded, ss...)
}

// forgetSupersededLocked empties the list when the head moved to version
// head other than by a local commit (a pull, a reset): the list would miss
// the pages that moved it. The caller holds v.mu.
func (v *Volume) forgetSupersededLocked(head Version) {
	v.mu.superseded, v.mu.supersededFrom = nil, head+1
}

// supersededLocked returns, for each page changed by the commits of
// versions from..to, what its first commit there superseded, if every one
// of those commits is listed; else nil. The caller holds v.mu.
func (v *Volume) supersededLocked(from, to Version) map[PageNo]Version {
	if from < v.mu.supersededFrom {
		return nil
	}
	prevs := map[PageNo]Version{}
	for _, s := range v.mu.superseded {
		if s.version > to {
			break
		}
		if _, ok := prevs[s.page]; !ok && s.version >= from {
			prevs[s.page] = s.prev
		}
	}
	return prevs
}

// dropSupersededLocked drops the supersessions of versions up to to, which
// the pruner is done with. The caller holds v.mu.
func (v *Volume) dropSupersededLocked(to Version) {
	i := 0
	for i < len(v.mu.superseded) && v.mu.superseded[i].version <= to {
		i++
	}
	if i == len(v.mu.superseded) {
		v.mu.superseded = nil
		return
	}
	v.mu.superseded = append(v.mu.superseded[:0], v.mu.superseded[i:]...)
}

// commitEndingAtOrAfter returns the version of the first commit record of
// volume id at or after version v, or limit if there is none up to it.
func (e *Engine) commitEndingAtOrAfter(id VolumeID, v, limit Version) (Version, error) {
	it, err := e.newIter(&pebble.IterOptions{LowerBound: commitKey(id, v), UpperBound: commitKey(id, limit+1)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if it.First() && len(it.Key()) == 17 {
		return Version(beUint64(it.Key()[9:17])), nil
	}
	return limit, it.Error()
}
