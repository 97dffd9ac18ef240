package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/remote"
)

// replica is a volume's attachment to its remote.
type replica struct {
	url   string
	store *remote.CountingStore
	// levels holds, per rollup level, the newest completed block that is
	// the left half of the next rollup (guarded by the volume's pushMu).
	levels map[uint8]*remoteMap

	mu      sync.Mutex
	fetches map[frameKey]*fetchCall // frames being fetched, for sharing
}

// Attach makes store, found at url, the remote the volume pushes to and
// pulls from. A volume follows one remote for life: attaching another URL
// than the one it replicated with is ErrRemoteMismatch. Attaching the same
// URL again is harmless (the first store stays in use).
func (v *Volume) Attach(url string, store remote.Store) error {
	if rec := v.repl.Load(); rec.url != "" && rec.url != url {
		return fmt.Errorf("attach %q to %s: %w: it replicates with %s", v.name, url, ErrRemoteMismatch, rec.url)
	}
	r := &replica{url: url, store: remote.NewCountingStore(store), levels: map[uint8]*remoteMap{}, fetches: map[frameKey]*fetchCall{}}
	if !v.rep.CompareAndSwap(nil, r) {
		if cur := v.rep.Load(); cur.url != url {
			return fmt.Errorf("attach %q to %s: %w: already attached to %s", v.name, url, ErrRemoteMismatch, cur.url)
		}
	}
	return nil
}

func (v *Volume) replica() (*replica, error) {
	r := v.rep.Load()
	if r == nil {
		return nil, ErrNoRemote
	}
	return r, nil
}

// RemoteStats returns the counters of the volume's remote requests in this
// process.
func (v *Volume) RemoteStats() remote.Stats {
	if r := v.rep.Load(); r != nil {
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
}

// Pull fast-forwards the volume to the remote's newest version. It reads
// metadata only: one LIST of the commits after the volume's version, then
// the rollups (or commits) that cover them, about 2*log2(k) small objects
// for k commits, read concurrently. It records, for every changed page,
// where its new image lives; page data moves only when a page is read (or
// hydrated). Snapshots taken before keep their version.
//
// A volume with local commits not yet pushed cannot pull (ErrAhead), nor
// can a diverged one (ErrDiverged); a volume that does not exist locally
// is created at the remote's newest version.
func (v *Volume) Pull(ctx context.Context) (PullResult, error) {
	r, err := v.replica()
	if err != nil {
		return PullResult{}, fmt.Errorf("pull %q: %w", v.name, err)
	}
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	before := r.store.Stats()
	res, err := v.pull(ctx, r)
	st := r.store.Stats().Sub(before)
	res.Requests, res.BytesRead = st.Requests(), st.BytesRead()
	if err != nil {
		err = fmt.Errorf("pull %q: %w", v.name, err)
	}
	return res, err
}

func (v *Volume) pull(ctx context.Context, r *replica) (PullResult, error) {
	rec := *v.repl.Load()
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
	if err != nil {
		return res, err
	}
	if len(parents) == 0 {
		return res, nil
	}
	m, err := v.readRange(ctx, r, rec.seq, rec.pushed, parents)
	if err != nil {
		return res, err
	}
	if err := v.apply(m, rec, parents[len(parents)-1]); err != nil {
		return res, err
	}
	res.To, res.Commits, res.PagesChanged = m.version, len(parents), int(m.changeset.GetCardinality())
	return res, nil
}

// listCommits returns the parents of the remote commits after version
// from, in order: the first is from itself.
func (v *Volume) listCommits(ctx context.Context, r *replica, from Version) ([]Version, error) {
	prefix := remotePrefix(v.name) + "c/"
	opts := remote.ListOptions{Prefix: prefix}
	if from > 0 {
		opts.StartAfter = remoteCommitKey(v.name, from-1)
	}
	var parents []Version
	for {
		page, err := r.store.List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list commits after version %d: %w", from, err)
		}
		for _, o := range page.Objects {
			p, err := strconv.ParseUint(strings.TrimPrefix(o.Key, prefix), 16, 64)
			if err != nil || len(o.Key)-len(prefix) != 16 {
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
		return nil, fmt.Errorf("%w: the remote has no commit after version %d, yet has one after %d: this volume's history is not the remote's (PRAGMA cambium_reset follows the remote)",
			ErrRemoteCorrupt, from, parents[0])
	}
	return parents, nil
}

// readRange reads the maps of commits seq+1..seq+len(parents), where
// parents[i] is the parent of commit seq+1+i and parents[0] is from, and
// merges them into one.
func (v *Volume) readRange(ctx context.Context, r *replica, seq uint64, from Version, parents []Version) (*remoteMap, error) {
	end := seq + uint64(len(parents))
	parentOf := func(s uint64) Version { return parents[s-seq] } // of commit s+1
	ps := pieces(seq, end)
	maps := make([]*remoteMap, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			maps[i], errs[i] = v.readPiece(ctx, r, p, parentOf)
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
	if m.parent != from || m.fromSeq != seq || m.toSeq != end || m.version <= parents[len(parents)-1] {
		return nil, fmt.Errorf("%w: commits %d..%d read as versions %d..%d, want from %d past %d",
			ErrRemoteCorrupt, seq+1, end, m.parent, m.version, from, parents[len(parents)-1])
	}
	return m, nil
}

// readPiece reads one rollup, or its two halves (recursively) when it is
// missing or unreadable, or one commit.
func (v *Volume) readPiece(ctx context.Context, r *replica, p piece, parentOf func(uint64) Version) (*remoteMap, error) {
	if p.level == 0 {
		key := remoteCommitKey(v.name, parentOf(p.start))
		raw, err := r.store.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", key, err)
		}
		m, err := decodeRemoteMap(key, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRemoteCorrupt, err)
		}
		if m.level != 0 || m.parent != parentOf(p.start) || m.fromSeq != p.start {
			return nil, fmt.Errorf("%w: %s is commit %d from version %d, want commit %d from %d",
				ErrRemoteCorrupt, key, m.toSeq, m.parent, p.start+1, parentOf(p.start))
		}
		return m, nil
	}
	key := remoteRollupKey(v.name, p.level, p.start)
	raw, err := r.store.Get(ctx, key)
	var m *remoteMap
	if err == nil {
		if m, err = decodeRemoteMap(key, raw); err == nil && (m.level != p.level || m.fromSeq != p.start || m.parent != parentOf(p.start)) {
			err = fmt.Errorf("%w: %s covers commits %d..%d from version %d", ErrRemoteCorrupt, key, m.fromSeq+1, m.toSeq, m.parent)
		}
	}
	if err == nil {
		return m, nil
	}
	if !errors.Is(err, remote.ErrNotFound) {
		if ctx.Err() != nil {
			return nil, err
		}
		v.e.opts.Logger.Warn("cambium: unusable rollup; reading its parts instead", "volume", v.name, "key", key, "err", err)
	}
	half := piece{level: p.level - 1, start: p.start}
	left, err := v.readPiece(ctx, r, half, parentOf)
	if err != nil {
		return nil, err
	}
	half.start += 1 << half.level
	right, err := v.readPiece(ctx, r, half, parentOf)
	if err != nil {
		return nil, err
	}
	return mergeMaps(left, right)
}

// apply makes map m, read from the remote, the volume's next version: in
// one batch, a stub for every changed page (where its image lives), zeros
// for pages it cleared, the commit and head records, and the replication
// record. It is the pull's commit.
func (v *Volume) apply(m *remoteMap, rec replRecord, lastParent Version) error {
	if !v.writer.TryLock() {
		return fmt.Errorf("%w: a write transaction is open; pull when it ends", ErrBusy)
	}
	v.writing.Store(true)
	defer func() {
		v.writing.Store(false)
		v.writer.Unlock()
	}()
	base := v.head.Load()
	if base.version != m.parent {
		return fmt.Errorf("%w: the volume moved to version %d during the pull", ErrBusy, base.version)
	}
	pageSize := base.pageSize
	if pageSize == 0 {
		pageSize = m.pageSize
	} else if m.pageSize != 0 && m.pageSize != pageSize {
		return fmt.Errorf("%w: the remote's pages are %d bytes, this volume's %d", ErrRemoteCorrupt, m.pageSize, pageSize)
	}
	b := v.e.db.NewBatch()
	defer b.Close()
	id, unlock, err := v.storeLocked(b)
	if err != nil {
		return err
	}
	defer unlock()
	zero := encodeZero()
	var stub []byte
	for _, ref := range m.segments {
		for p := range roaring.Values(ref.pages) {
			fr, _ := ref.frameOf(PageNo(p))
			stub = encodeStub(stub[:0], ref, fr)
			if err := b.Set(pageKey(id, PageNo(p), m.version), stub, nil); err != nil {
				return err
			}
		}
	}
	zeros := m.changeset.Clone()
	for _, ref := range m.segments {
		zeros.AndNot(ref.pages)
	}
	for p := range roaring.Values(zeros) {
		if err := b.Set(pageKey(id, PageNo(p), m.version), zero, nil); err != nil {
			return err
		}
	}
	crec, err := commitRecord{parent: base.version, pageCount: m.pageCount, pageSize: pageSize, time: m.time, changeset: m.changeset}.encode()
	if err != nil {
		return err
	}
	if err := b.Set(commitKey(id, m.version), crec, nil); err != nil {
		return err
	}
	if err := b.Set(headKey(id), headRecord{version: m.version, pageCount: m.pageCount, pageSize: pageSize}.encode(), nil); err != nil {
		return err
	}
	rec.pushed, rec.seq, rec.lastParent, rec.url = m.version, m.toSeq, lastParent, v.rep.Load().url
	rec.remoteVersion = max(rec.remoteVersion, m.version)
	if err := b.Set(replKey(id), rec.encode(), nil); err != nil {
		return err
	}
	v.committing.Store(uint64(m.version))
	if err := v.e.clog.write(b, logEntry{volume: id, version: m.version, parent: base.version}, true); err != nil {
		v.committing.Store(uint64(base.version))
		return v.e.fail(fmt.Errorf("apply versions %d..%d of %q: %w", m.parent, m.version, v.name, err))
	}
	v.id.Store(uint64(id))
	v.repl.Store(&rec)
	v.publish(base, m.version, m.pageCount, pageSize, m.changeset)
	return nil
}

// publish makes version (with pageCount pages, changed pages changed) the
// volume's head after its batch is applied: the cache first, then the
// state readers pin.
func (v *Volume) publish(base *state, version Version, pageCount, pageSize uint32, changed *roaring.Bitmap) {
	shrunk := pageCount < base.pageCount
	if shrunk {
		v.cacheGen.Add(1)
	}
	for p := range roaring.Values(changed) {
		v.e.cache.remove(v, PageNo(p))
	}
	v.mu.Lock()
	next := &state{version: version, pageCount: pageCount, pageSize: pageSize}
	for _, sh := range base.shrinks {
		if sh.version > v.mu.prunedThrough {
			next.shrinks = append(next.shrinks, sh)
		}
	}
	if shrunk {
		next.shrinks = append(next.shrinks, shrink{version: version, pageCount: pageCount})
	}
	v.head.Store(next)
	v.forgetSupersededLocked(version)
	v.mu.Unlock()
	v.e.kickPruner()
}

// FetchResult describes one Fetch.
// Its JSON is the result of PRAGMA cambium_fetch and of cambium fetch --json.
type FetchResult struct {
	Version       Version `json:"version"`        // the volume's version
	RemoteVersion Version `json:"remote_version"` // the remote's newest version
	Commits       int     `json:"commits"`        // remote commits after the volume's pushed version
	Requests      int64   `json:"remote_requests"`
}

// Fetch learns the remote's newest version without applying anything: one
// LIST, and one GET of the newest commit when there are new ones.
func (v *Volume) Fetch(ctx context.Context) (FetchResult, error) {
	r, err := v.replica()
	if err != nil {
		return FetchResult{}, fmt.Errorf("fetch %q: %w", v.name, err)
	}
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	before := r.store.Stats()
	rec := *v.repl.Load()
	res := FetchResult{Version: v.head.Load().version, RemoteVersion: rec.pushed}
	parents, err := v.listCommits(ctx, r, rec.pushed)
	if err == nil && len(parents) > 0 {
		key := remoteCommitKey(v.name, parents[len(parents)-1])
		var raw []byte
		if raw, err = r.store.Get(ctx, key); err == nil {
			var m *remoteMap
			if m, err = decodeRemoteMap(key, raw); err == nil {
				res.RemoteVersion, res.Commits = m.version, len(parents)
			}
		}
	}
	res.Requests = r.store.Stats().Sub(before).Requests()
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
		v.repl.Store(&rec)
	}
	return res, nil
}

// pullTimeout bounds a lazy page fetch, which has no caller's context.
const pullTimeout = 2 * time.Minute
