package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// replica is a volume's attachment to its remote.
type replica struct {
	url   string
	store *remote.CountingStore
	// levels holds, per rollup level, the newest completed block that is
	// the left half of the next rollup (guarded by the volume's pushMu).
	levels map[uint8]*manifest.Map
	// collected holds, per rollup level, the start of a left half that
	// this process's collector deleted (see collector.dropCarries): its
	// block gets no rollup (guarded by the volume's pushMu).
	collected map[uint8]uint64

	// resolved is what the last read of a page whose segment was
	// collected read (see resolveCollected).
	resolved atomic.Pointer[resolved]

	mu      sync.Mutex
	fetches map[frameKey]*fetchCall // frames being fetched, for sharing
}

// Attach makes store, found at url, the remote the volume pushes to and
// pulls from. A volume follows one remote for life: attaching another URL
// than the one it replicated with is ErrRemoteMismatch. Attaching the same
// URL again is harmless (the first store stays in use).
func (v *Volume) Attach(url string, store remote.Store) error {
	if v.cv != nil {
		_, err := clientCall(v, "attach", url, nil, func(lv *Volume) (struct{}, error) { return struct{}{}, lv.Attach(url, store) })
		return err
	}
	if rec := v.replState.Load(); rec.url != "" && rec.url != url {
		return fmt.Errorf("attach %q to %s: %w: it replicates with %s", v.name, url, ErrRemoteMismatch, rec.url)
	}
	r := &replica{url: url, store: remote.NewCountingStore(store), levels: map[uint8]*manifest.Map{}, fetches: map[frameKey]*fetchCall{}}
	if !v.attached.CompareAndSwap(nil, r) {
		if cur := v.attached.Load(); cur.url != url {
			return fmt.Errorf("attach %q to %s: %w: already attached to %s", v.name, url, ErrRemoteMismatch, cur.url)
		}
	}
	return nil
}

// remoteOp is one operation on a volume's remote: a push, a pull, a
// fetch, a hydrate. Its store, which shadows the attachment's, counts this
// operation's requests and bytes alone, for the operation's result: the
// lazy fetches of concurrent readers are not charged to it. The
// attachment's store, which it wraps, counts every request of the volume
// (RemoteStats).
type remoteOp struct {
	*replica
	store *remote.CountingStore
	// levelBytes counts the bytes of level segments a push uploads.
	levelBytes *atomic.Int64
}

// op begins an operation on the remote.
func (r *replica) op() remoteOp {
	return remoteOp{replica: r, store: remote.NewCountingStore(r.store), levelBytes: new(atomic.Int64)}
}

// replicaToWrite returns the attached remote for an operation that writes
// locally (a push, a pull, a reset), unless a failed write has stopped the
// engine's writes: the store's state is unknown then.
func (v *Volume) replicaToWrite() (*replica, error) {
	if err := v.e.writable(); err != nil {
		return nil, err
	}
	return v.replica()
}

func (v *Volume) replica() (*replica, error) {
	r := v.attached.Load()
	if r == nil {
		return nil, ErrNoRemote
	}
	return r, nil
}

// RemoteStats returns the counters of the volume's remote requests in this
// process.
func (v *Volume) RemoteStats() remote.Stats {
	if v.cv != nil {
		s, _ := clientCall(v, "remote_stats", nil, nil, func(lv *Volume) (remote.Stats, error) { return lv.RemoteStats(), nil })
		return s
	}
	if r := v.attached.Load(); r != nil {
		return r.store.Stats()
	}
	return remote.Stats{}
}

// PullResult describes one Pull.
// Its JSON is the result of PRAGMA cambium_pull and of cambium pull --json.
type PullResult struct {
	From         Version `json:"from"`              // the volume moved from From
	To           Version `json:"to"`                // to To; equal when the remote had nothing new
	Commits      int     `json:"commits"`           // remote commits applied
	PagesChanged int     `json:"pages_changed"`     // pages whose image changed from From to To
	Requests     int64   `json:"remote_requests"`   // object store requests made
	BytesRead    int64   `json:"remote_bytes_read"` // payload bytes downloaded

	changed *roaring.Bitmap // the pages changed, for rewarm
}

// Pull fast-forwards the volume to the remote's newest version. It reads
// metadata only: one LIST of the commits after the volume's version, then
// the rollups (or commits) that cover them, about 2*log2(k) small objects
// for k commits, read concurrently; or, where the garbage collector has
// replaced those rollups with a compacted checkpoint's catch-up index,
// that checkpoint and the commits after it. It records, for every changed
// page, where its new image lives; page data moves only when a page is
// read (or hydrated). Snapshots taken before keep their version.
//
// A volume with local commits not yet pushed cannot pull (ErrAhead), nor
// can a diverged one (ErrDiverged); a volume that does not exist locally
// is created at the remote's newest version.
func (v *Volume) Pull(ctx context.Context) (PullResult, error) {
	if v.cv != nil {
		return clientCall(v, "pull", nil, nil, func(lv *Volume) (PullResult, error) { return lv.Pull(ctx) })
	}
	r, err := v.replicaToWrite()
	if err != nil {
		return PullResult{}, fmt.Errorf("pull %q: %w", v.name, err)
	}
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	op := r.op()
	var base *Snapshot
	if v.warm.Load() {
		// Pinned, so that the pruner keeps the images rewarm looks for.
		base = v.Snapshot()
	}
	res, err := v.pull(ctx, op)
	st := op.store.Stats()
	res.Requests, res.BytesRead = st.Requests(), st.BytesRead()
	if err != nil {
		err = fmt.Errorf("pull %q: %w", v.name, err)
	}
	if res.To != res.From {
		// Another writer pushed: the left halves kept from this one's
		// pushes are read from the remote again when needed (and the
		// collector may have deleted them meanwhile).
		clear(r.levels)
		clear(r.collected)
	}
	if base != nil {
		if err == nil && res.changed != nil {
			v.rewarm(r, base, res.changed)
		} else {
			base.Release()
		}
	}
	return res, err
}

func (v *Volume) pull(ctx context.Context, r remoteOp) (PullResult, error) {
	rec := *v.replState.Load()
	head := v.head.Load()
	res := PullResult{From: head.version, To: head.version}
	if rec.diverged {
		return res, v.divergedError(rec.pushed)
	}
	if head.version != rec.pushed {
		return res, fmt.Errorf("%w: local versions %d..%d are not in the remote yet; push them first (PRAGMA cambium_push), or discard them (PRAGMA cambium_reset)",
			ErrAhead, rec.pushed+1, head.version)
	}
	parents, err := v.listCommits(ctx, r, rec.pushed)
	var gap *historyGap
	if errors.As(err, &gap) {
		return v.pullCheckpoint(ctx, r, rec, res, gap)
	}
	if err != nil {
		return res, err
	}
	if len(parents) == 0 {
		return res, nil
	}
	m, err := v.readRange(ctx, r, rec.seq, rec.pushed, parents, false)
	lastParent := parents[len(parents)-1]
	if errors.Is(err, errRollupMissing) {
		// The collector deletes the rollups that end at a checkpoint with
		// a catch-up index: catch up through the index, or else read the
		// missing rollups' parts.
		var ok bool
		m, lastParent, ok, err = v.pullIndexed(ctx, r, rec, head, parents)
		if err == nil && !ok {
			m, err = v.readRange(ctx, r, rec.seq, rec.pushed, parents, true)
		}
	}
	if errors.Is(err, remote.ErrNotFound) {
		// A collector deleted the commits since they were listed: list
		// again, and find the checkpoint that replaces them.
		if _, lerr := v.listCommits(ctx, r, rec.pushed); errors.As(lerr, &gap) {
			return v.pullCheckpoint(ctx, r, rec, res, gap)
		}
	}
	if err != nil {
		return res, err
	}
	if err := v.applyPulled(m, rec, lastParent); err != nil {
		return res, err
	}
	res.To, res.Commits, res.PagesChanged = Version(m.Version), len(parents), int(m.Changeset.GetCardinality())
	res.changed = m.Changeset
	return res, nil
}

// errRollupMissing is readRange's error, without halves, for a rollup
// that is not in the remote.
var errRollupMissing = errors.New("a rollup of the range is missing")

// pullIndexed reads the map of the commits after the head (rec.pushed,
// the parents of the commits listed from there) through the newest
// checkpoint's catch-up index, the commits after the checkpoint merged
// on top, and returns it with the parent of the newest commit (for a
// pusher's rollups). ok is false when the newest checkpoint is not in the
// range or its index cannot serve a catch-up from the head.
func (v *Volume) pullIndexed(ctx context.Context, r remoteOp, rec replRecord, head *state, parents []Version) (m *manifest.Map, lastParent Version, ok bool, err error) {
	ks, err := v.listCheckpoints(ctx, r)
	if err != nil || len(ks) == 0 || ks[len(ks)-1] <= rec.pushed {
		return nil, 0, false, err
	}
	k, err := v.readCheckpoint(ctx, r, ks[len(ks)-1])
	if errors.Is(err, remote.ErrNotFound) {
		return nil, 0, false, nil // collected since the listing
	}
	if err != nil {
		return nil, 0, false, err
	}
	// The commits up to the checkpoint, and those after it.
	i := k.ToSeq - rec.seq
	if k.ToSeq <= rec.seq || i > uint64(len(parents)) || (i < uint64(len(parents)) && parents[i] != Version(k.Version)) {
		return nil, 0, false, nil // pushed after the listing, or not on this chain
	}
	m, ok = manifest.CatchUp(k, uint64(rec.pushed), rec.seq, head.pageCount, head.pageSize)
	if !ok {
		return nil, 0, false, nil
	}
	lastParent = parents[i-1]
	if after := parents[i:]; len(after) > 0 {
		rest, err := v.readRange(ctx, r, k.ToSeq, Version(k.Version), after, true)
		if err != nil {
			return nil, 0, false, err
		}
		if m, err = mergeMaps(m, rest); err != nil {
			return nil, 0, false, err
		}
		lastParent = after[len(after)-1]
	}
	return m, lastParent, true, nil
}

// pullCheckpoint catches up a volume whose version the remote's garbage
// collector no longer keeps: it reads the newest checkpoint and the
// commits after it, and replaces the volume's whole page map with theirs.
func (v *Volume) pullCheckpoint(ctx context.Context, r remoteOp, rec replRecord, res PullResult, gap *historyGap) (PullResult, error) {
	ks, err := v.listCheckpoints(ctx, r)
	if err != nil {
		return res, err
	}
	if len(ks) == 0 || ks[len(ks)-1] <= gap.from {
		return res, gap
	}
	k := ks[len(ks)-1]
	m, err := v.readCheckpoint(ctx, r, k)
	if err != nil {
		return res, err
	}
	// The commits after the checkpoint were listed with the gap.
	var parents []Version
	for _, p := range gap.parents {
		if p >= k {
			parents = append(parents, p)
		}
	}
	if len(parents) > 0 && parents[0] != k {
		return res, fmt.Errorf("%w: the remote has a checkpoint of version %d, and no commit from it but one from %d", ErrRemoteCorrupt, k, parents[0])
	}
	// The parent of the newest commit, for a pusher's rollups: the last
	// listed one, or, with none after the checkpoint, the one ending at it.
	var lastParent Version
	for _, p := range gap.parents {
		if p < k {
			lastParent = p
		}
	}
	if len(parents) > 0 {
		rng, err := v.readRange(ctx, r, m.ToSeq, k, parents, true)
		if err != nil {
			return res, err
		}
		if m, err = mergeMaps(m, rng); err != nil {
			return res, err
		}
		lastParent = parents[len(parents)-1]
	}
	if err := v.applyPulled(m, rec, lastParent); err != nil {
		return res, err
	}
	res.To, res.Commits, res.PagesChanged = Version(m.Version), int(m.ToSeq-rec.seq), int(m.Changeset.GetCardinality())
	res.changed = m.Changeset
	return res, nil
}

// listCheckpoints returns the versions of the remote's checkpoints,
// ascending.
func (v *Volume) listCheckpoints(ctx context.Context, r remoteOp) ([]Version, error) {
	opts := remote.ListOptions{Prefix: manifest.CheckpointPrefix(v.name)}
	var out []Version
	for {
		page, err := r.store.List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list checkpoints: %w", err)
		}
		for _, o := range page.Objects {
			volume, ver, ok := manifest.ParseCheckpointKey(o.Key)
			if !ok || volume != v.name {
				return nil, fmt.Errorf("%w: %s is not a checkpoint key", ErrRemoteCorrupt, o.Key)
			}
			out = append(out, Version(ver))
		}
		if !page.Truncated || len(page.Objects) == 0 {
			return out, nil
		}
		opts.StartAfter = page.Objects[len(page.Objects)-1].Key
	}
}

// listCommits returns the parents of the remote commits after version
// from, in order: the first is from itself.
func (v *Volume) listCommits(ctx context.Context, r remoteOp, from Version) ([]Version, error) {
	opts := remote.ListOptions{Prefix: manifest.CommitPrefix(v.name)}
	if from > 0 {
		opts.StartAfter = manifest.CommitKey(v.name, uint64(from-1))
	}
	var parents []Version
	for {
		page, err := r.store.List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list commits after version %d: %w", from, err)
		}
		for _, o := range page.Objects {
			volume, p, ok := manifest.ParseCommitKey(o.Key)
			if !ok || volume != v.name {
				return nil, fmt.Errorf("%w: %s is not a commit key", ErrRemoteCorrupt, o.Key)
			}
			if n := len(parents); n > 0 && Version(p) <= parents[n-1] {
				return nil, fmt.Errorf("%w: %s listed out of order", ErrRemoteCorrupt, o.Key)
			}
			parents = append(parents, Version(p))
		}
		if !page.Truncated || len(page.Objects) == 0 {
			break
		}
		opts.StartAfter = page.Objects[len(page.Objects)-1].Key
	}
	if len(parents) > 0 && parents[0] != from {
		return nil, &historyGap{volume: v.name, from: from, parents: parents}
	}
	return parents, nil
}

// historyGap is listCommits' error when the remote has no commit after
// version from but has later ones: the garbage collector deleted the
// commits from there (a checkpoint then takes their place), or the
// volume's history is not the remote's.
type historyGap struct {
	volume  string
	from    Version
	parents []Version // the parents of the commits listed, ascending
}

func (g *historyGap) Error() string {
	return fmt.Sprintf("%v: the remote has no commit after version %d of %q, yet has one after %d, and no checkpoint to read instead: this volume's history is not the remote's (PRAGMA cambium_reset follows the remote)",
		ErrRemoteCorrupt, g.from, g.volume, g.parents[0])
}

func (g *historyGap) Unwrap() error { return ErrRemoteCorrupt }

// readRange reads the maps of commits seq+1..seq+len(parents), where
// parents[i] is the parent of commit seq+1+i and parents[0] is from, and
// merges them into one. A rollup missing or unreadable is read as its two
// halves, or, without halves, a missing one is errRollupMissing.
func (v *Volume) readRange(ctx context.Context, r remoteOp, seq uint64, from Version, parents []Version, halves bool) (*manifest.Map, error) {
	end := seq + uint64(len(parents))
	parentOf := func(s uint64) Version { return parents[s-seq] } // of commit s+1
	ps := manifest.Pieces(seq, end)
	maps := make([]*manifest.Map, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			maps[i], errs[i] = v.readPiece(ctx, r, p, parentOf, halves)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m := maps[0]
	for _, next := range maps[1:] {
		var err error
		if m, err = mergeMaps(m, next); err != nil {
			return nil, err
		}
	}
	if Version(m.Parent) != from || m.FromSeq != seq || m.ToSeq != end || Version(m.Version) <= parents[len(parents)-1] {
		return nil, fmt.Errorf("%w: commits %d..%d read as versions %d..%d, want from %d past %d",
			ErrRemoteCorrupt, seq+1, end, m.Parent, m.Version, from, parents[len(parents)-1])
	}
	return m, nil
}

// readCommit reads the remote commit whose parent is version parent.
func (v *Volume) readCommit(ctx context.Context, r remoteOp, parent Version) (*manifest.Map, error) {
	key := manifest.CommitKey(v.name, uint64(parent))
	raw, err := r.store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", key, err)
	}
	m, err := decodeRemoteMap(key, raw)
	if err != nil {
		return nil, err
	}
	if m.Level != 0 || Version(m.Parent) != parent {
		return nil, fmt.Errorf("%w: %s is a level-%d map from version %d, want the commit from %d",
			ErrRemoteCorrupt, key, m.Level, m.Parent, parent)
	}
	return m, nil
}

// readPiece reads one rollup, or its two halves (recursively) when it is
// missing or unreadable (unless halves is false and it is missing:
// errRollupMissing), or one commit.
func (v *Volume) readPiece(ctx context.Context, r remoteOp, p manifest.Piece, parentOf func(uint64) Version, halves bool) (*manifest.Map, error) {
	if p.Level == 0 {
		m, err := v.readCommit(ctx, r, parentOf(p.Start))
		if err == nil && m.FromSeq != p.Start {
			err = fmt.Errorf("%w: %s is commit %d, want commit %d", ErrRemoteCorrupt,
				manifest.CommitKey(v.name, m.Parent), m.ToSeq, p.Start+1)
		}
		return m, err
	}
	key := manifest.RollupKey(v.name, p.Level, p.Start)
	raw, err := r.store.Get(ctx, key)
	var m *manifest.Map
	if err == nil {
		if m, err = decodeRemoteMap(key, raw); err == nil && (m.Level != p.Level || m.FromSeq != p.Start || Version(m.Parent) != parentOf(p.Start)) {
			err = fmt.Errorf("%w: %s covers commits %d..%d from version %d", ErrRemoteCorrupt, key, m.FromSeq+1, m.ToSeq, m.Parent)
		}
	}
	if err == nil {
		return m, nil
	}
	if !halves && errors.Is(err, remote.ErrNotFound) {
		return nil, errRollupMissing
	}
	if !errors.Is(err, remote.ErrNotFound) {
		if ctx.Err() != nil {
			return nil, err
		}
		v.e.opts.Logger.Warn("cambium: unusable rollup; reading its parts instead", "volume", v.name, "key", key, "err", err)
	}
	half := manifest.Piece{Level: p.Level - 1, Start: p.Start}
	left, err := v.readPiece(ctx, r, half, parentOf, halves)
	if err != nil {
		return nil, err
	}
	half.Start += 1 << half.Level
	right, err := v.readPiece(ctx, r, half, parentOf, halves)
	if err != nil {
		return nil, err
	}
	return mergeMaps(left, right)
}

// applyPulled makes map m, read from the remote, the volume's next version
// (m follows the head, or is a full page map of a later version): in one
// batch, a stub for every changed page (where its image lives), zeros
// for pages it cleared, the commit and head records, and the replication
// record. It is the pull's commit.
func (v *Volume) applyPulled(m *manifest.Map, rec replRecord, lastParent Version) error {
	if !v.takeWriter() {
		return fmt.Errorf("%w: a write transaction is open; pull when it ends", ErrBusy)
	}
	defer v.releaseWriter()
	base, version := v.head.Load(), Version(m.Version)
	if full := m.IsCheckpoint() && version > base.version; base.version != Version(m.Parent) && !full {
		return fmt.Errorf("%w: the volume moved to version %d during the pull", ErrBusy, base.version)
	}
	pageSize := base.pageSize
	if pageSize == 0 || m.Rewrites() {
		// A map that rewrote every page may change the page size (a
		// VACUUM after PRAGMA page_size): it stubs every page of the
		// version at the new size, so no image of the old one is read at
		// it, while snapshots of older versions keep theirs.
		pageSize = m.PageSize
	} else if m.PageSize != 0 && m.PageSize != pageSize {
		return fmt.Errorf("%w: the remote's pages are %d bytes, this volume's %d, and versions %d..%d do not rewrite every page", ErrRemoteCorrupt, m.PageSize, pageSize, m.Parent, m.Version)
	}
	b := v.e.db.NewBatch()
	defer b.Close()
	id, unlock, err := v.assignID(b)
	if err != nil {
		return err
	}
	defer unlock()
	zero := encodeZero()
	var stub []byte
	var stubs int64 // stubs and zeros written, for the budget's metadata
	for _, ref := range m.Segments {
		for p := range roaring.Values(ref.Pages) {
			fr, _ := ref.FrameOf(PageNo(p))
			stub = encodeStub(stub[:0], ref, fr)
			if err := b.Set(pageKey(id, PageNo(p), version), stub, nil); err != nil {
				return err
			}
			stubs++
		}
	}
	zeros := m.Changeset.Clone()
	for _, ref := range m.Segments {
		zeros.AndNot(ref.Pages)
	}
	for p := range roaring.Values(zeros) {
		if err := b.Set(pageKey(id, PageNo(p), version), zero, nil); err != nil {
			return err
		}
		stubs++
	}
	crec, err := commitRecord{parent: base.version, pageCount: m.PageCount, pageSize: pageSize, time: m.Time, changeset: m.Changeset}.encode()
	if err != nil {
		return err
	}
	if err := b.Set(commitKey(id, version), crec, nil); err != nil {
		return err
	}
	if err := b.Set(headKey(id), headRecord{version: version, pageCount: m.PageCount, pageSize: pageSize}.encode(), nil); err != nil {
		return err
	}
	rec.pushed, rec.seq, rec.lastParent, rec.url, rec.pushedHere = version, m.ToSeq, lastParent, v.attached.Load().url, false
	rec.remoteVersion = max(rec.remoteVersion, version)
	if err := b.Set(replKey(id), rec.encode(), nil); err != nil {
		return err
	}
	if err := v.logHeadMove(b, id, base.version, version, true, logApplied); err != nil {
		return v.e.fail(fmt.Errorf("apply versions %d..%d of %q: %w", m.Parent, version, v.name, err))
	}
	if bud := v.e.budget; bud != nil {
		bud.addMeta(stubs, 0)
	}
	v.replState.Store(&rec)
	v.publishPulled(base, version, m.PageCount, pageSize, m.Changeset)
	v.noteCatchUp(m)
	return nil
}

// publishPulled makes version (with pageCount pages, changed pages changed) the
// volume's head after its batch is applied: the cache first, then the
// state readers pin.
func (v *Volume) publishPulled(base *state, version Version, pageCount, pageSize uint32, changed *roaring.Bitmap) {
	shrunk := pageCount < base.pageCount
	if shrunk {
		v.cacheGen.Add(1)
	}
	for p := range roaring.Values(changed) {
		v.e.cache.remove(v, PageNo(p))
	}
	v.mu.Lock()
	v.head.Store(v.successorLocked(base, version, pageCount, pageSize))
	shrink := int64(-1)
	if shrunk {
		shrink = int64(pageCount)
	}
	v.movedLocked(change{version: version, pages: changed, shrink: shrink})
	v.forgetSupersededLocked(version)
	v.mu.Unlock()
	v.e.kickPruner()
}

// PollResult describes one Poll.
// Its JSON is the result of PRAGMA cambium_fetch and of cambium fetch --json.
type PollResult struct {
	Version       Version `json:"version"`        // the volume's version
	RemoteVersion Version `json:"remote_version"` // the remote's newest version
	Commits       int     `json:"commits"`        // remote commits after the volume's pushed version
	Requests      int64   `json:"remote_requests"`
}

// Poll learns the remote's newest version without applying anything: one
// LIST, and one GET of the newest commit when there are new ones. (The
// PRAGMA and the CLI command that call it are cambium_fetch and cambium
// fetch, after git fetch; in the engine, fetching is downloading pages.)
func (v *Volume) Poll(ctx context.Context) (PollResult, error) {
	if v.cv != nil {
		return clientCall(v, "poll", nil, nil, func(lv *Volume) (PollResult, error) { return lv.Poll(ctx) })
	}
	r, err := v.replica()
	if err != nil {
		return PollResult{}, fmt.Errorf("fetch %q: %w", v.name, err)
	}
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	op := r.op()
	rec := *v.replState.Load()
	res := PollResult{Version: v.head.Load().version, RemoteVersion: rec.pushed}
	parents, err := v.listCommits(ctx, op, rec.pushed)
	var gap *historyGap
	if errors.As(err, &gap) {
		parents, err = gap.parents, nil // collected: a pull reads a checkpoint
	}
	if err == nil && len(parents) > 0 {
		var m *manifest.Map
		if m, err = v.readCommit(ctx, op, parents[len(parents)-1]); err == nil {
			res.RemoteVersion, res.Commits = Version(m.Version), len(parents)
		}
	}
	res.Requests = op.store.Stats().Requests()
	if err != nil {
		return res, fmt.Errorf("fetch %q: %w", v.name, err)
	}
	if id := VolumeID(v.id.Load()); id != 0 && res.RemoteVersion > rec.remoteVersion {
		rec.remoteVersion = res.RemoteVersion
		if err := v.saveRepl(id, rec); err != nil {
			return res, err
		}
	} else if id == 0 && res.RemoteVersion > rec.remoteVersion {
		rec.remoteVersion = res.RemoteVersion
		v.replState.Store(&rec)
	}
	return res, nil
}

// pullTimeout bounds a lazy page fetch, which has no caller's context.
const pullTimeout = 2 * time.Minute
