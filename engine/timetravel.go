package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// SnapshotAt pins a read-only snapshot of version n, for point-in-time
// reads and restores. It is local when the volume still stores version n
// (a version it committed or pulled that the pruner has not passed), else
// it is read from the remote: the maps of the commits up to n (about
// log2(n) objects), and then page frames as they are read, kept in memory
// for the snapshot's life. Version n must be a version of the remote's
// log: a push rolls several local versions into one, and only its last is
// a remote version (ErrVersion says which are near).
func (v *Volume) SnapshotAt(ctx context.Context, n Version) (*Snapshot, error) {
	if v.cv != nil {
		return v.cv.snapshotAt(n)
	}
	if s, ok, err := v.localSnapshotAt(n); ok || err != nil {
		return s, err
	}
	r, err := v.replica()
	if err != nil {
		return nil, fmt.Errorf("open %q at version %d: %w: it is not stored locally (newest %d) and no remote is attached", v.name, n, ErrVersion, v.head.Load().version)
	}
	m, err := v.remoteMapAt(ctx, r.op(), n)
	if err != nil {
		return nil, fmt.Errorf("open %q at version %d: %w", v.name, n, err)
	}
	return &Snapshot{
		v:   v,
		st:  &state{version: n, pageCount: m.PageCount, pageSize: m.PageSize},
		rem: &remoteView{m: m, frames: map[frameKey][]byte{}},
	}, nil
}

// remoteMapAt returns the full page map of remote version n: the newest
// checkpoint at or before it, if any, and the commits after that up to n.
func (v *Volume) remoteMapAt(ctx context.Context, r remoteOp, n Version) (*manifest.Map, error) {
	ks, err := v.listCheckpoints(ctx, r)
	if err != nil {
		return nil, err
	}
	var (
		ck   *manifest.Map
		from Version
		seq  uint64
	)
	if i := sort.Search(len(ks), func(i int) bool { return ks[i] > n }) - 1; i >= 0 {
		if ck, err = v.readCheckpoint(ctx, r, ks[i]); err != nil {
			return nil, err
		}
		if ks[i] == n {
			return ck, nil
		}
		from, seq = ks[i], ck.ToSeq
	}
	parents, err := v.listCommits(ctx, r, from)
	var gap *historyGap
	if errors.As(err, &gap) {
		// The commits from the checkpoint (or version 0) on are gone:
		// version n is older than the remote keeps.
		return nil, v.collectedError(ctx, r, n, ks)
	}
	if err != nil {
		return nil, err
	}
	count := commitsThrough(parents, n)
	if count == 0 {
		return nil, fmt.Errorf("%w in the remote%s", ErrVersion, nearVersions(parents, n))
	}
	m, err := v.readRange(ctx, r, seq, from, parents[:count], true)
	if err != nil {
		return nil, err
	}
	if ck != nil {
		if m, err = mergeMaps(ck, m); err != nil {
			return nil, err
		}
	} else {
		m.Level = manifest.CheckpointLevel // a map from version 0 is full
	}
	if Version(m.Version) != n {
		return nil, fmt.Errorf("%w in the remote: its newest is %d", ErrVersion, m.Version)
	}
	return m, nil
}

// commitsThrough returns how many of the commits from parents[0] (whose
// parents are parents) end at or before version n, if one ends at n (the
// last one's version is only in its map: it is taken to be n if n is past
// its parent); else 0.
func commitsThrough(parents []Version, n Version) int {
	// Commit i (from 0) covers (parents[i], parents[i+1]].
	for i := 1; i < len(parents); i++ {
		if parents[i] == n {
			return i
		}
	}
	if len(parents) > 0 && n > parents[len(parents)-1] {
		return len(parents)
	}
	return 0
}

// collectedError says that version n is older than the remote keeps, and
// which is the oldest it keeps (its oldest checkpoint, of ks).
func (v *Volume) collectedError(ctx context.Context, r remoteOp, n Version, ks []Version) error {
	if len(ks) == 0 {
		return fmt.Errorf("%w: version %d: the remote's oldest commits are gone and it has no checkpoint", ErrRemoteCorrupt, n)
	}
	oldest := ""
	if m, err := v.readCheckpoint(ctx, r, ks[0]); err == nil {
		oldest = ", committed at " + m.Time.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Errorf("%w: version %d is older than the remote's retention window keeps; the oldest version it keeps is %d%s", ErrCollected, n, ks[0], oldest)
}

func nearVersions(parents []Version, n Version) string {
	for i := 1; i < len(parents); i++ {
		if parents[i-1] < n && n < parents[i] {
			return fmt.Sprintf(": one push rolled versions %d..%d into one; the nearest remote versions are %d and %d", parents[i-1]+1, parents[i], parents[i-1], parents[i])
		}
	}
	if len(parents) == 0 {
		return ": the remote has no commits"
	}
	return ""
}

// localSnapshotAt pins version n if the volume stores it whole.
func (v *Volume) localSnapshotAt(n Version) (*Snapshot, bool, error) {
	for {
		s, ok, retry, err := v.tryLocalSnapshotAt(n)
		if !retry {
			return s, ok, err
		}
	}
}

// tryLocalSnapshotAt is one attempt of localSnapshotAt. The commit record
// of n is read before v.mu is taken (Snapshot must never wait for I/O);
// under it, what the read assumed is checked again, and retry says to read
// again: a commit moved the head past n after the read skipped it as the
// head, or a Reset replaced version n (it changes the lineage).
func (v *Volume) tryLocalSnapshotAt(n Version) (s *Snapshot, ok, retry bool, err error) {
	id, lineage, readAt := VolumeID(v.id.Load()), v.lineage.Load(), v.head.Load().version
	var c commitRecord
	found := false
	if id != 0 && n != 0 && n < readAt {
		raw, ok, err := v.e.get(commitKey(id, n))
		if err != nil {
			return nil, false, false, err
		}
		if ok {
			if c, err = decodeCommitRecord(fmt.Sprintf("commit record %d of %q", n, v.name), raw); err != nil {
				return nil, false, false, err
			}
			found = true
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	head := v.head.Load()
	switch {
	case n == head.version:
		return v.pinLocked(head), true, false, nil
	case n > head.version && v.attached.Load() == nil:
		return nil, false, false, fmt.Errorf("open %q at version %d: %w: the newest is %d", v.name, n, ErrVersion, head.version)
	case v.lineage.Load() != lineage, n < head.version && n >= readAt:
		return nil, false, true, nil
	}
	// A prune step in progress may be deleting images of versions below
	// its end (see pruneStep).
	if !found || n > head.version || n < max(v.mu.prunedThrough, v.mu.pruning) {
		return nil, false, false, nil
	}
	// Pinned under v.mu, so the pruner, which reads the pins under it,
	// keeps every image this version reads.
	st := &state{version: n, pageCount: c.pageCount, pageSize: c.pageSize, shrinks: head.shrinks}
	return v.pinLocked(st), true, false, nil
}

// remoteView is what a snapshot read from the remote reads through: the
// full page map of its version, and the frames it fetched.
type remoteView struct {
	m      *manifest.Map
	mu     sync.Mutex
	frames map[frameKey][]byte
	bytes  int
}

// remoteViewBudget bounds the frames a remote snapshot keeps in memory.
const remoteViewBudget = 64 << 20

func (s *Snapshot) readRemote(p PageNo, dst []byte) ([]byte, error) {
	rv := s.rem
	ref, fr, zero, ok := rv.m.Locate(p)
	ps := int(s.st.pageSize)
	if !ok || zero {
		return appendZeros(dst, ps), nil
	}
	st := stub{seg: ref.ID, salt: ref.Salt, size: ref.Size, frame: fr}
	k := frameKey{st.seg, fr.Offset}
	rv.mu.Lock()
	pages, hit := rv.frames[k]
	rv.mu.Unlock()
	if !hit {
		r, err := s.v.replica()
		if err != nil {
			return nil, err
		}
		if pages, err = s.v.fetchFrame(r, st, ps); errors.Is(err, remote.ErrNotFound) {
			img, _, err := s.v.collectedPage(p, s.st.version, ps, err)
			if err != nil {
				return nil, err
			}
			return append(dst, img...), nil
		}
		if err != nil {
			return nil, err
		}
		rv.mu.Lock()
		if rv.bytes+len(pages) > remoteViewBudget {
			clear(rv.frames)
			rv.bytes = 0
		}
		rv.frames[k] = pages
		rv.bytes += len(pages)
		rv.mu.Unlock()
	}
	at := int(p-fr.First) * ps
	return append(dst, pages[at:at+ps]...), nil
}

// VersionAt returns the newest version of the volume committed at or
// before t, and its commit time, for opening or restoring by time (then
// SnapshotAt). It looks in the local log first, and in the remote's when
// the local log cannot tell: when t falls among versions that a pull
// brought in as one commit, or before the first local commit. The remote
// costs one LIST and about log2(k) GETs of commit maps for k commits.
// Commit times are taken to grow with versions (each writer's clock).
// Before the first version, it is ErrVersion, naming the oldest version and
// its time.
func (v *Volume) VersionAt(ctx context.Context, t time.Time) (Version, time.Time, error) {
	if v.cv != nil {
		a, err := clientCall(v, "version_at", t, nil, func(lv *Volume) (versionAt, error) {
			n, at, err := lv.VersionAt(ctx, t)
			return versionAt{n, at}, err
		})
		return a.Version, a.Time, err
	}
	log, err := v.Log()
	if err != nil {
		return 0, time.Time{}, err
	}
	// The newest local commit at or before t, and whether the local log
	// knows every version between it and the next local commit.
	i := sort.Search(len(log), func(i int) bool { return log[i].Time.After(t) }) - 1
	var best CommitInfo
	exact := false
	if i >= 0 {
		best = log[i]
		exact = i == len(log)-1 || log[i+1].Version == log[i+1].Parent+1
	} else {
		exact = len(log) > 0 && log[0].Parent == 0 && log[0].Version == 1
	}
	r := v.attached.Load()
	if !exact && r != nil {
		ver, at, ok, err := v.remoteVersionAt(ctx, r.op(), t)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("open %q at %s: %w", v.name, t.Format(time.RFC3339Nano), err)
		}
		if ok && ver > best.Version {
			best = CommitInfo{Version: ver, Time: at}
		}
	}
	if best.Version == 0 {
		oldest := "it has no versions"
		if len(log) > 0 {
			oldest = fmt.Sprintf("its oldest stored version, %d, was committed at %s", log[0].Version, log[0].Time.Format(time.RFC3339Nano))
		}
		return 0, time.Time{}, fmt.Errorf("open %q at %s: %w committed at or before then: %s", v.name, t.Format(time.RFC3339Nano), ErrVersion, oldest)
	}
	return best.Version, best.Time, nil
}

// remoteVersionAt returns the newest remote version committed at or before
// t, by a binary search over the remote's commits; ok is false if none is.
func (v *Volume) remoteVersionAt(ctx context.Context, r remoteOp, t time.Time) (Version, time.Time, bool, error) {
	parents, err := v.listCommits(ctx, r, 0)
	var gap *historyGap
	if errors.As(err, &gap) {
		// The collector kept the commits from the one ending at its
		// oldest checkpoint on: the oldest of those is the oldest
		// restorable version.
		parents, err = gap.parents, nil
	}
	if err != nil || len(parents) == 0 {
		return 0, time.Time{}, false, err
	}
	maps := map[int]*manifest.Map{}
	commit := func(i int) (*manifest.Map, error) { // i from 0: the commit after parents[i]
		if m, ok := maps[i]; ok {
			return m, nil
		}
		m, err := v.readCommit(ctx, r, parents[i])
		if err != nil {
			return nil, err
		}
		maps[i] = m
		return m, nil
	}
	var searchErr error
	n := sort.Search(len(parents), func(i int) bool {
		m, err := commit(i)
		if err != nil {
			searchErr = err
			return true
		}
		return m.Time.After(t)
	})
	if searchErr != nil {
		return 0, time.Time{}, false, searchErr
	}
	if n == 0 && gap != nil {
		m, err := commit(0)
		if err != nil {
			return 0, time.Time{}, false, err
		}
		return 0, time.Time{}, false, fmt.Errorf("%w: nothing committed at or before then is kept: the oldest restorable version, %d, was committed at %s",
			ErrCollected, m.Version, m.Time.UTC().Format(time.RFC3339Nano))
	}
	if n == 0 {
		return 0, time.Time{}, false, nil
	}
	m, err := commit(n - 1)
	if err != nil {
		return 0, time.Time{}, false, err
	}
	return Version(m.Version), m.Time, true, nil
}
