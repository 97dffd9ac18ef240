package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// The lifecycle of a volume's remote objects: checkpoints (full page maps,
// compacted when that pays) and the garbage collection of what no retained
// version needs. Package manifest's doc has the layout and the order of
// the deletions; this file decides what to keep.

// Retention and collection defaults.
const (
	// DefaultRetain is the retention window when none is set.
	DefaultRetain = 24 * time.Hour
	// RetainForever keeps every version.
	RetainForever time.Duration = -1
	// DefaultMinAge is the age below which no object is deleted: a push
	// or a compaction in flight on another machine may be about to name
	// it. It is far longer than any push takes.
	DefaultMinAge = 15 * time.Minute
)

// Compaction rule. A checkpoint of the newest version is compacted (its
// pages rewritten densely, in page order, into new segments) when the
// segments it would otherwise read cost more than an eighth of a fresh
// copy over one: dead bytes (the referenced segments' bytes that hold no
// image of the version) above live/8, or more segments than a fresh copy
// needs, counting each extra segment (one more request for a cold scan) as
// compactRequestBytes of transfer, above live/8. A compaction uploads
// the live bytes once; it runs at most once per collection, and the rule
// lets changes worth at least an eighth of the volume pile up between two.
const (
	compactWasteDivisor = 8
	compactRequestBytes = 64 << 10
)

// gcConcurrency bounds the collector's concurrent requests.
const gcConcurrency = 16

// GCOptions configures one garbage collection.
type GCOptions struct {
	// Retain is the retention window: every version committed within
	// Retain before now stays restorable, and so does the version in force
	// at the window's start. RetainForever keeps every version; 0 keeps
	// the newest only.
	Retain time.Duration
	// MinAge is the age under which no object is deleted (DefaultMinAge
	// when 0; a negative value deletes regardless of age, for tests).
	MinAge time.Duration
	// DryRun reports what a collection would do, and writes nothing.
	DryRun bool
	// Now is the collector's clock; zero means time.Now().
	Now time.Time
	// Progress, when set, is called as the collection advances.
	Progress func(GCProgress)
}

// GCProgress is a collection's progress: Phase ("list", "read", "compact",
// "delete"), with Done of Total units (objects, pages) when known.
type GCProgress struct {
	Phase       string
	Done, Total int
}

// GCResult describes one garbage collection.
// Its JSON is the result of PRAGMA cambium_gc and of cambium gc --json.
type GCResult struct {
	DryRun            bool    `json:"dry_run,omitempty"`
	NewestVersion     Version `json:"newest_version"`     // the remote's newest version
	CheckpointVersion Version `json:"checkpoint_version"` // newest checkpoint after the collection, 0 if none
	Compacted         bool    `json:"compacted"`          // the newest version's pages were rewritten
	PagesRewritten    int     `json:"pages_rewritten"`
	// PreImagesRewritten counts the base's images of later-changed pages
	// written densely (see densePreImages); BytesRewritten counts both.
	PreImagesRewritten int   `json:"pre_images_rewritten"`
	PreImageBytes      int64 `json:"pre_image_bytes"`
	BytesRewritten     int64 `json:"bytes_rewritten"`
	DeletedObjects     int   `json:"deleted_objects"`
	DeletedBytes       int64 `json:"deleted_bytes"`
	KeptYoung          int   `json:"kept_young"` // garbage kept because it is younger than the minimum age
	// PendingObjects (PendingBytes) are segments and checkpoints that no
	// retained version needs, listed for deletion by a collection at least
	// the minimum age from now (see sweep).
	PendingObjects int       `json:"pending_objects"`
	PendingBytes   int64     `json:"pending_bytes"`
	RemoteObjects  int       `json:"remote_objects"`
	RemoteBytes    int64     `json:"remote_bytes"`
	OldestVersion  Version   `json:"oldest_version"` // the oldest restorable version
	OldestTime     time.Time `json:"oldest_time"`
	Requests       int64     `json:"remote_requests"`
	Note           string    `json:"note,omitempty"` // why the collection did less than it could
}

// GC collects the volume's remote: it writes a checkpoint of the oldest
// version to retain (and of the newest, compacted, when the rule above
// says it pays), then deletes the commits, rollups, checkpoints and
// segments no retained version needs and that are older than the minimum
// age. It never deletes what a retained version reads, and it is safe to
// run while a writer pushes and while other collectors run, on this
// machine or others; a collection cut short (an error, a crash) leaves a
// valid remote, and the next one finishes the job. Compaction reads the
// newest version's pages from local storage: it is skipped (Note says so)
// when this volume does not have the remote's newest version.
func (v *Volume) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	if v.cv != nil {
		return clientCall(v, "gc", gcArgs{opts.Retain, opts.MinAge, opts.DryRun, opts.Now}, func(b []byte) {
			var p GCProgress
			if opts.Progress != nil && json.Unmarshal(b, &p) == nil {
				opts.Progress(p)
			}
		}, func(lv *Volume) (GCResult, error) { return lv.GC(ctx, opts) })
	}
	r, err := v.replica()
	if err != nil {
		return GCResult{}, fmt.Errorf("gc %q: %w", v.name, err)
	}
	if opts.MinAge == 0 {
		opts.MinAge = DefaultMinAge
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Progress == nil {
		opts.Progress = func(GCProgress) {}
	}
	v.gcMu.Lock()
	defer v.gcMu.Unlock()
	op := r.op()
	var res GCResult
	for attempt := 1; ; attempt++ {
		c := &collector{v: v, r: op, opts: opts, res: GCResult{DryRun: opts.DryRun}}
		err = c.run(ctx)
		if res.Compacted { // an earlier attempt's work
			c.res.Compacted, c.res.PagesRewritten, c.res.BytesRewritten = true, res.PagesRewritten, res.BytesRewritten
		}
		res = c.res
		var stale *staleListing
		if !errors.As(err, &stale) || attempt == maxGCAttempts {
			break
		}
		// What was done so far stays (a compaction's checkpoint spares
		// the next attempt the upload); list again.
	}
	res.Requests = op.store.Stats().Requests()
	if err != nil {
		return res, fmt.Errorf("gc %q: %w", v.name, err)
	}
	return res, nil
}

// maxGCAttempts bounds the listings of one GC call (see staleListing).
const maxGCAttempts = 3

// staleListing is the error of a collection that took so long since it
// listed the remote (more than half the minimum age) that it must not
// write a checkpoint naming the segments it saw: another collector may
// have found them unnamed meanwhile and be about to delete them (see
// sweep). GC lists again.
type staleListing struct {
	age, minAge time.Duration
}

func (e *staleListing) Error() string {
	return fmt.Sprintf("the collection listed the remote %v ago, more than half the minimum age (%v): its view may be stale; run it again, or with a longer minimum age", e.age.Round(time.Millisecond), e.minAge)
}

// collector is one run of GC.
type collector struct {
	v    *Volume
	r    remoteOp
	opts GCOptions
	res  GCResult

	commits     []listedCommit      // by parent
	rollups     []remote.ObjectInfo // with their parsed keys below
	checkpoints map[Version]remote.ObjectInfo
	segments    map[SegmentID]remote.ObjectInfo
	garbage     []remote.ObjectInfo // garbage lists
	// listed is when the listing began, on this machine's clock.
	listed time.Time
	// full is the newest version's full page map.
	full *manifest.Map
	// written are the objects this run wrote, kept whatever the listing
	// says.
	written map[string]int64
}

// listedCommit is a remote commit, listed and read.
type listedCommit struct {
	info   remote.ObjectInfo
	parent Version
	sum    commitSummary
}

// commitSummary is what the collector needs of a remote commit; commits
// never change, so a volume keeps the summaries it read (gcCommits).
type commitSummary struct {
	version  Version
	seq      uint64
	time     time.Time
	segments []SegmentID
	changed  *roaring.Bitmap // the commit's changeset
	minCount uint32          // the smallest page count over its versions
}

func (c *collector) run(ctx context.Context) error {
	if err := c.list(ctx); err != nil {
		return err
	}
	if len(c.commits) == 0 {
		c.res.Note = "the remote has no commits"
		return nil
	}
	if err := c.readCommits(ctx); err != nil {
		return err
	}
	newest := c.commits[len(c.commits)-1].sum
	c.res.NewestVersion = newest.version

	// The chain starts at version 0, or at a checkpoint a commit follows.
	startIdx, start, err := c.start(ctx)
	if err != nil {
		return err
	}
	// The newest version's full map, from the newest checkpoint: what a
	// cold reader of it reads, and what the compaction rule weighs.
	latestIdx, latest, err := c.latestCheckpoint(ctx, startIdx, start)
	if err != nil {
		return err
	}
	full, err := c.fullMapAt(ctx, latest, latestIdx, len(c.commits))
	if err != nil {
		return err
	}
	c.full = full

	// The base: the oldest version to keep restorable.
	baseIdx := c.baseIndex(startIdx)
	base := c.commits[baseIdx].sum

	// The newest version's checkpoint, compacted when that pays; then the
	// base's, unless nothing before it is to be deleted.
	wrote := map[Version]*manifest.Map{}
	compacted, err := c.checkpointNewest(ctx, full, newest, baseIdx)
	if err != nil {
		return err
	}
	if compacted != nil {
		wrote[newest.version] = compacted
	}
	_, haveBase := c.checkpoints[base.version]
	switch {
	case start == nil && baseIdx == 0, base.version == newest.version && compacted != nil:
		// Version 0 is the start, or the compacted checkpoint is the base.
	case base.version == newest.version && !haveBase:
		if !c.opts.DryRun {
			full.Time = newest.time
			if err := c.putCheckpoint(ctx, full); err != nil {
				return err
			}
		}
		wrote[base.version] = full
	case base.version != newest.version && (!haveBase || compacted != nil):
		from, fromIdx := start, startIdx
		if latestIdx-1 <= baseIdx {
			from, fromIdx = latest, latestIdx // the newest checkpoint at or before the base
		}
		m, err := c.checkpointBase(ctx, from, fromIdx, baseIdx, compacted)
		if err != nil {
			return err
		}
		wrote[base.version] = m
	}
	c.res.OldestVersion, c.res.OldestTime = base.version, base.time
	for ver := range c.checkpoints {
		if ver >= base.version {
			c.res.CheckpointVersion = max(c.res.CheckpointVersion, ver)
		}
	}
	for ver := range wrote {
		c.res.CheckpointVersion = max(c.res.CheckpointVersion, ver)
	}
	if err := c.collect(ctx, baseIdx, c.res.CheckpointVersion, wrote); err != nil {
		return err
	}
	for key, size := range c.written {
		if _, ver, ok := manifest.ParseCheckpointKey(key); ok {
			if old, ok := c.checkpoints[Version(ver)]; ok { // replaced
				c.res.RemoteObjects--
				c.res.RemoteBytes -= old.Size
			}
		}
		c.res.RemoteObjects++
		c.res.RemoteBytes += size
	}
	return nil
}

// list lists the volume's objects.
func (c *collector) list(ctx context.Context) error {
	c.opts.Progress(GCProgress{Phase: "list"})
	c.checkpoints = map[Version]remote.ObjectInfo{}
	c.segments = map[SegmentID]remote.ObjectInfo{}
	c.written = map[string]int64{}
	c.listed = time.Now()
	opts := remote.ListOptions{Prefix: manifest.VolumePrefix(c.v.name)}
	for {
		page, err := c.r.store.List(ctx, opts)
		if err != nil {
			return fmt.Errorf("list the remote's objects: %w", err)
		}
		for _, o := range page.Objects {
			c.res.RemoteObjects++
			c.res.RemoteBytes += o.Size
			if _, parent, ok := manifest.ParseCommitKey(o.Key); ok {
				c.commits = append(c.commits, listedCommit{info: o, parent: Version(parent)})
			} else if _, _, _, ok := manifest.ParseRollupKey(o.Key); ok {
				c.rollups = append(c.rollups, o)
			} else if _, ver, ok := manifest.ParseCheckpointKey(o.Key); ok {
				c.checkpoints[Version(ver)] = o
			} else if _, id, ok := manifest.ParseSegmentKey(o.Key); ok {
				c.segments[id] = o
			} else if _, _, _, ok := manifest.ParseGarbageKey(o.Key); ok {
				c.garbage = append(c.garbage, o)
			}
			// Anything else is not ours to delete.
		}
		if !page.Truncated || len(page.Objects) == 0 {
			break
		}
		opts.StartAfter = page.Objects[len(page.Objects)-1].Key
	}
	slices.SortFunc(c.commits, func(a, b listedCommit) int { return cmpVersion(a.parent, b.parent) })
	return nil
}

func cmpVersion(a, b Version) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readCommits reads every listed commit's summary, from the volume's
// memory of earlier runs where it can, and checks that they chain.
func (c *collector) readCommits(ctx context.Context) error {
	v := c.v
	if v.gcCommits == nil {
		v.gcCommits = map[Version]commitSummary{}
	}
	var todo []int
	for i, lc := range c.commits {
		if s, ok := v.gcCommits[lc.parent]; ok {
			c.commits[i].sum = s
		} else {
			todo = append(todo, i)
		}
	}
	c.opts.Progress(GCProgress{Phase: "read", Total: len(todo)})
	var mu sync.Mutex
	done := 0
	err := forEach(ctx, len(todo), gcConcurrency, func(ctx context.Context, j int) error {
		i := todo[j]
		m, err := v.readCommit(ctx, c.r, c.commits[i].parent)
		if err != nil {
			return err
		}
		s := commitSummary{version: Version(m.Version), seq: m.ToSeq, time: m.Time, changed: m.Changeset, minCount: m.MinCount}
		for _, ref := range m.Segments {
			s.segments = append(s.segments, ref.ID)
		}
		mu.Lock()
		c.commits[i].sum = s
		v.gcCommits[c.commits[i].parent] = s
		done++
		c.opts.Progress(GCProgress{Phase: "read", Done: done, Total: len(todo)})
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	// Forget the commits that are gone.
	for parent := range v.gcCommits {
		if _, ok := slices.BinarySearchFunc(c.commits, parent, func(lc listedCommit, p Version) int { return cmpVersion(lc.parent, p) }); !ok {
			delete(v.gcCommits, parent)
		}
	}
	for i := 1; i < len(c.commits); i++ {
		prev, cur := c.commits[i-1].sum, c.commits[i]
		if cur.parent != prev.version || cur.sum.seq != prev.seq+1 {
			return fmt.Errorf("%w: commit %d (from version %d) follows commit %d ending at version %d",
				ErrRemoteCorrupt, cur.sum.seq, cur.parent, prev.seq, prev.version)
		}
	}
	return nil
}

// start returns where the chain of commits starts: index i such that the
// commits from i on, read over the returned checkpoint (nil for version
// 0), give every version from there on.
func (c *collector) start(ctx context.Context) (int, *manifest.Map, error) {
	if c.commits[0].parent == 0 {
		return 0, nil, nil
	}
	// The oldest checkpoint that ends one of the commits: the commits
	// after it apply over it.
	for i, lc := range c.commits {
		if _, ok := c.checkpoints[lc.sum.version]; !ok {
			continue
		}
		m, err := c.v.readCheckpoint(ctx, c.r, lc.sum.version)
		if err != nil {
			return 0, nil, err
		}
		if m.ToSeq != lc.sum.seq {
			return 0, nil, fmt.Errorf("%w: the checkpoint of version %d ends commit %d, the commit ending there is %d",
				ErrRemoteCorrupt, m.Version, m.ToSeq, lc.sum.seq)
		}
		return i + 1, m, nil
	}
	return 0, nil, fmt.Errorf("%w: the remote's oldest commit starts at version %d and no checkpoint ends any commit: the versions before it cannot be read",
		ErrRemoteCorrupt, c.commits[0].parent)
}

// latestCheckpoint returns the newest checkpoint that ends a commit from
// startIdx-1 on, and the index of the commit after it; start and startIdx
// if there is none.
func (c *collector) latestCheckpoint(ctx context.Context, startIdx int, start *manifest.Map) (int, *manifest.Map, error) {
	for i := len(c.commits) - 1; i >= max(startIdx-1, 0); i-- {
		ver := c.commits[i].sum.version
		if _, ok := c.checkpoints[ver]; !ok {
			continue
		}
		if i == startIdx-1 {
			return startIdx, start, nil
		}
		m, err := c.v.readCheckpoint(ctx, c.r, ver)
		if err != nil {
			return 0, nil, err
		}
		if m.ToSeq != c.commits[i].sum.seq {
			return 0, nil, fmt.Errorf("%w: the checkpoint of version %d ends commit %d, the commit ending there is %d",
				ErrRemoteCorrupt, m.Version, m.ToSeq, c.commits[i].sum.seq)
		}
		return i + 1, m, nil
	}
	return startIdx, start, nil
}

// fullMapAt returns the full page map of the version commit end-1 ends,
// from start (a checkpoint, or nil for version 0) and the commits from
// startIdx on.
func (c *collector) fullMapAt(ctx context.Context, start *manifest.Map, startIdx, end int) (*manifest.Map, error) {
	if startIdx == end {
		return start, nil
	}
	parents := make([]Version, 0, end-startIdx)
	for _, lc := range c.commits[startIdx:end] {
		parents = append(parents, lc.parent)
	}
	var seq uint64
	if start != nil {
		seq = start.ToSeq
	}
	m, err := c.v.readRange(ctx, c.r, seq, parents[0], parents, true)
	if err != nil {
		return nil, err
	}
	if start == nil {
		m.Level = manifest.CheckpointLevel // a map from version 0 is full
		return m, nil
	}
	return mergeMaps(start, m)
}

// baseIndex returns the index of the commit ending at the oldest version
// to keep: the newest committed at or before the window's start, but not
// one before the chain's start.
func (c *collector) baseIndex(startIdx int) int {
	first := max(startIdx-1, 0) // the oldest commit ending at a version the chain can read
	if c.opts.Retain < 0 {
		return first
	}
	cutoff := c.opts.Now.Add(-c.opts.Retain)
	i := sort.Search(len(c.commits), func(i int) bool { return c.commits[i].sum.time.After(cutoff) }) - 1
	return min(max(i, first), len(c.commits)-1)
}

// checkpointNewest compacts the newest version when the rule above says
// it pays and this volume has that version, and returns the checkpoint
// it wrote (nil if none), with its catch-up index from the base (commit
// baseIdx) on.
func (c *collector) checkpointNewest(ctx context.Context, full *manifest.Map, newest commitSummary, baseIdx int) (*manifest.Map, error) {
	var live, referenced int64
	for _, ref := range full.Segments {
		for _, f := range ref.Frames {
			live += int64(f.Length)
		}
		referenced += ref.Size
	}
	fresh := max(1, int((live+int64(maxSegmentBytes)-1)/int64(maxSegmentBytes)))
	extra := int64(max(0, len(full.Segments)-fresh))
	if referenced-live <= live/compactWasteDivisor && extra*compactRequestBytes <= live/compactWasteDivisor {
		return nil, nil
	}
	rec := c.v.replState.Load()
	if rec.diverged || rec.pushed < newest.version {
		c.res.Note = fmt.Sprintf("not compacted: this volume does not have the remote's newest version, %d (it has %d); run the collection where the writer runs, or pull first", newest.version, rec.pushed)
		return nil, nil
	}
	snap, ok, err := c.v.localSnapshotAt(newest.version)
	if err != nil {
		return nil, err
	}
	if !ok {
		c.res.Note = fmt.Sprintf("not compacted: version %d is no longer stored locally", newest.version)
		return nil, nil
	}
	defer snap.Release()
	pages := roaring.New()
	pages.AddRange(1, uint64(snap.PageCount())+1)
	c.res.Compacted, c.res.PagesRewritten = true, int(snap.PageCount())
	if c.opts.DryRun {
		c.res.BytesRewritten = live
		return nil, nil
	}
	c.opts.Progress(GCProgress{Phase: "compact", Total: int(snap.PageCount())})
	refs, err := c.v.uploadSegments(ctx, c.r, snap, pages)
	if err != nil {
		return nil, err
	}
	m := &manifest.Map{
		Level:     manifest.CheckpointLevel,
		ToSeq:     newest.seq,
		Version:   uint64(newest.version),
		PageCount: snap.PageCount(),
		PageSize:  uint32(snap.PageSize()),
		Time:      newest.time,
		Changeset: pages,
		Segments:  refs,
		CatchUp:   c.catchUpIndex(baseIdx, snap.PageCount()),
	}
	for _, ref := range refs {
		c.res.BytesRewritten += ref.Size
		c.written[manifest.SegmentKey(c.v.name, ref.ID)] = ref.Size
	}
	c.opts.Progress(GCProgress{Phase: "compact", Done: int(snap.PageCount()), Total: int(snap.PageCount())})
	return m, c.putCheckpoint(ctx, m)
}

// checkpointBase returns the checkpoint of the base version, writing it
// unless the remote has it: the full map of the base, with the pages that
// did not change between the base and the newest version taken from the
// newest's compacted checkpoint when there is one (so that the base keeps
// none of the scattered segments alive for them).
func (c *collector) checkpointBase(ctx context.Context, start *manifest.Map, startIdx, baseIdx int, compacted *manifest.Map) (*manifest.Map, error) {
	m, err := c.fullMapAt(ctx, start, startIdx, baseIdx+1)
	if err != nil {
		return nil, err
	}
	if compacted != nil && compacted.PageSize == m.PageSize {
		// The pages the commits after the base left alone have the same
		// image in the base and in the newest version (none when one of
		// them changed the page size: it rewrote every page).
		changed, minCount := c.changedAfter(baseIdx)
		unchanged := roaring.New()
		unchanged.AddRange(1, uint64(min(m.PageCount, minCount))+1)
		unchanged.AndNot(changed)
		if m, err = manifest.Repoint(m, compacted, unchanged); err != nil {
			return nil, err
		}
	}
	if m, err = c.densePreImages(ctx, m, baseIdx, compacted); err != nil {
		return nil, err
	}
	if c.opts.DryRun {
		return m, nil
	}
	return m, c.putCheckpoint(ctx, m)
}

// densePreImages rewrites, when that pays, the images that base
// checkpoint m takes from segments nothing else kept names: the base's
// images of the pages that changed after it (its pre-images), which lie
// scattered over old segments, most of whose bytes are dead (a few pages
// of a push's segment, of a level segment, of the first bulk upload).
// They are written densely into new segments, m is repointed there, and
// the old segments become garbage. It pays by the compaction rule: when
// those segments hold more dead bytes than an eighth of a fresh copy of
// the newest version (live, the fresh copy's bytes), so that the remote
// stays within a fresh copy, the window's pushes, its pre-images and an
// eighth. The images are read from the remote, where m says, in ranged
// reads of runs of frames.
func (c *collector) densePreImages(ctx context.Context, m *manifest.Map, baseIdx int, newest *manifest.Map) (*manifest.Map, error) {
	shared := map[SegmentID]bool{}
	for _, lc := range c.commits[baseIdx:] {
		for _, id := range lc.sum.segments {
			shared[id] = true
		}
	}
	var fresh int64 // the newest version's live bytes
	for _, ref := range c.full.Segments {
		for _, f := range ref.Frames {
			fresh += int64(f.Length)
		}
	}
	kept := c.full // what the newest version reads after this collection
	if newest != nil {
		kept = newest
	}
	for _, ref := range kept.Segments {
		shared[ref.ID] = true
	}
	pages := roaring.New()
	var live, referenced int64
	for _, ref := range m.Segments {
		if shared[ref.ID] {
			continue
		}
		pages.Or(ref.Pages)
		for _, f := range ref.Frames {
			live += int64(f.Length)
		}
		referenced += ref.Size
	}
	if referenced-live <= fresh/compactWasteDivisor {
		return m, nil
	}
	c.res.PreImagesRewritten = int(pages.GetCardinality())
	if c.opts.DryRun {
		return m, nil
	}
	c.opts.Progress(GCProgress{Phase: "pre-images", Total: c.res.PreImagesRewritten})
	images, err := c.readImages(ctx, m, pages)
	if err != nil {
		return nil, err
	}
	refs, err := c.v.uploadImages(ctx, c.r, int(m.PageSize), func(fn func(PageNo, []byte) error) error {
		for p := range roaring.Values(pages) {
			if err := fn(PageNo(p), images[PageNo(p)]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, ref := range refs {
		c.res.BytesRewritten += ref.Size
		c.res.PreImageBytes += ref.Size
		c.written[manifest.SegmentKey(c.v.name, ref.ID)] = ref.Size
	}
	c.opts.Progress(GCProgress{Phase: "pre-images", Done: c.res.PreImagesRewritten, Total: c.res.PreImagesRewritten})
	dense := &manifest.Map{Level: manifest.CheckpointLevel, Version: m.Version, ToSeq: m.ToSeq, PageCount: m.PageCount, PageSize: m.PageSize, Changeset: pages, Segments: refs}
	return manifest.Repoint(m, dense, pages)
}

// changedAfter returns what the commits after commit baseIdx changed,
// and the smallest page count over their versions.
func (c *collector) changedAfter(baseIdx int) (changed *roaring.Bitmap, minCount uint32) {
	changed, minCount = roaring.New(), ^uint32(0)
	for _, lc := range c.commits[baseIdx+1:] {
		changed.Or(lc.sum.changed)
		minCount = min(minCount, lc.sum.minCount)
	}
	return changed, minCount
}

// catchUpIndex returns the catch-up index of a checkpoint of the newest
// version, of count pages: the version at which each page the commits
// after the base (commit baseIdx) changed last changed, for the pages the
// newest version has. nil when the base is the newest version.
func (c *collector) catchUpIndex(baseIdx int, count uint32) *manifest.CatchUpIndex {
	if baseIdx >= len(c.commits)-1 {
		return nil
	}
	last := map[uint32]Version{}
	for _, lc := range c.commits[baseIdx+1:] {
		for p := range roaring.Values(lc.sum.changed) {
			last[p] = lc.sum.version
		}
	}
	x := &manifest.CatchUpIndex{Since: uint64(c.commits[baseIdx].sum.version)}
	for p := range last {
		if p <= count {
			x.Pages = append(x.Pages, p)
		}
	}
	slices.Sort(x.Pages)
	for _, p := range x.Pages {
		x.Versions = append(x.Versions, uint64(last[p]))
	}
	return x
}

// putCheckpoint writes checkpoint m. A checkpoint may replace another of
// the same version (two collectors compacting at once): both hold the
// same images, and a reader of the one replaced finds its pages again in
// this one (see Volume.resolveCollected).
func (c *collector) putCheckpoint(ctx context.Context, m *manifest.Map) error {
	if err := c.checkFresh(m); err != nil {
		return err
	}
	raw, err := m.Encode()
	if err != nil {
		return err
	}
	key := manifest.CheckpointKey(c.v.name, m.Version)
	if err := c.r.store.Put(ctx, key, raw); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", key, err)
	}
	c.written[key] = int64(len(raw))
	return nil
}

// readImages reads from the remote the images of pages that map m
// locates, verified, in ranged reads of runs of nearby frames.
func (c *collector) readImages(ctx context.Context, m *manifest.Map, pages *roaring.Bitmap) (map[PageNo][]byte, error) {
	var stubs []stub
	taken := map[SegmentID]*roaring.Bitmap{} // the pages m takes from each segment
	for _, ref := range m.Segments {
		want := roaring.And(ref.Pages, pages)
		if want.IsEmpty() {
			continue
		}
		taken[ref.ID] = want
		for _, f := range ref.Frames {
			if want.IntersectsWithInterval(uint64(f.First), uint64(f.Last)+1) {
				stubs = append(stubs, stub{seg: ref.ID, salt: ref.Salt, size: ref.Size, frame: f})
			}
		}
	}
	runs := groupRuns(stubs, hydrateGapBytes)
	pageSize := int(m.PageSize)
	images := make(map[PageNo][]byte, pages.GetCardinality())
	var mu sync.Mutex
	err := forEach(ctx, len(runs), gcConcurrency, func(ctx context.Context, i int) error {
		run := runs[i]
		frames, err := c.v.fetchFrames(ctx, c.r.store, run, pageSize)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for k, s := range run {
			for p := s.frame.First; p <= s.frame.Last; p++ {
				if taken[s.seg].Contains(uint32(p)) {
					at := int(p-s.frame.First) * pageSize
					images[p] = frames[k][at : at+pageSize]
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n := uint64(len(images)); n != pages.GetCardinality() {
		return nil, fmt.Errorf("%w: the map of version %d locates %d of its %d pages to rewrite", ErrRemoteCorrupt, m.Version, n, pages.GetCardinality())
	}
	return images, nil
}

// checkFresh returns a staleListing error if checkpoint m names a segment
// this run did not write and the listing is older than half the minimum
// age: see sweep.
func (c *collector) checkFresh(m *manifest.Map) error {
	if c.opts.MinAge < 0 {
		return nil
	}
	age := time.Since(c.listed)
	if age <= c.opts.MinAge/2 {
		return nil
	}
	for _, ref := range m.Segments {
		if _, ok := c.written[manifest.SegmentKey(c.v.name, ref.ID)]; !ok {
			return &staleListing{age: age, minAge: c.opts.MinAge}
		}
	}
	return nil
}

// collect deletes what no version from the base on needs, and nothing
// younger than the minimum age: first the commits ending before the base,
// the rollups covering only those and the checkpoints other than the
// base's and the newest (newest), then the segments no remaining commit,
// rollup or checkpoint names. (A replica that read pages from a deleted
// checkpoint finds them again through the remaining ones: see
// collectedPage.)
func (c *collector) collect(ctx context.Context, baseIdx int, newest Version, wrote map[Version]*manifest.Map) error {
	base := c.commits[baseIdx].sum
	live := map[SegmentID]bool{}
	for _, lc := range c.commits[baseIdx:] {
		for _, id := range lc.sum.segments {
			live[id] = true
		}
	}
	var doomed []remote.ObjectInfo
	var deferred []remote.ObjectInfo
	var newestMap *manifest.Map
	for ver, o := range c.checkpoints {
		if ver != base.version && ver != newest {
			switch {
			case ver > base.version && c.opts.MinAge >= 0:
				// Another collector with a shorter window, running
				// now, may have made it its base: it goes a collection
				// later (see sweep), and its segments stay till then.
				deferred = append(deferred, o)
			case !c.young(o):
				doomed = append(doomed, o)
				continue
			default:
				// Kept for its age: so are the segments it names, else
				// it would name missing ones (a later collection may
				// start its chain from it).
				doomed = append(doomed, o)
			}
		}
		m, ok := wrote[ver]
		if !ok {
			var err error
			m, err = c.v.readCheckpoint(ctx, c.r, ver)
			if errors.Is(err, remote.ErrNotFound) {
				continue // another collector deleted it: it names nothing
			}
			if err != nil {
				return err // its segments are unknown: delete none
			}
		}
		if ver == newest {
			newestMap = m
		}
		for _, ref := range m.Segments {
			live[ref.ID] = true
		}
	}
	for ver, m := range wrote {
		if ver == newest {
			newestMap = m
		}
		for _, ref := range m.Segments {
			live[ref.ID] = true
		}
	}
	// A reader at a version from the base on catches up to the newest
	// checkpoint through its catch-up index, when it has one reaching back
	// to the base: the rollups ending at or before it serve nobody then.
	var caughtUpSeq uint64
	if newestMap != nil && newestMap.CatchUp != nil && Version(newestMap.CatchUp.Since) <= base.version {
		caughtUpSeq = newestMap.ToSeq
	}
	// The commits before the first young one (those after it stay too,
	// never to leave a hole in the chain), and the segments of those that
	// stay.
	var commits []remote.ObjectInfo
	for i, lc := range c.commits[:baseIdx] {
		if len(commits) < i || c.young(lc.info) {
			c.res.KeptYoung++
			for _, id := range lc.sum.segments {
				live[id] = true
			}
			continue
		}
		commits = append(commits, lc.info)
	}
	// A rollup that starts at the base or after it, and ends after the
	// newest checkpoint (or any, when that has no catch-up index from the
	// base), is kept, and so is its level segment: a replica catching up
	// from a retained version reads it. Others go: one that starts before
	// the base serves only readers of versions before it, which catch up
	// through the checkpoint instead, and one that ends at or before an
	// indexed checkpoint serves readers that catch up through the index. A
	// replica that read pages in a level segment that goes finds them
	// again through the kept maps (see collectedPage).
	newestSeq := c.commits[len(c.commits)-1].sum.seq
	// This data directory pushed the newest commit: any other process
	// pulls before it pushes, which makes it forget the left halves it
	// kept (Pull), so only this process's pusher could merge one.
	rec := c.v.replState.Load()
	writerHere := rec.pushedHere && rec.pushed == c.commits[len(c.commits)-1].sum.version && !c.opts.DryRun
	listed := map[remote.ObjectInfo]bool{}
	for _, o := range c.rollups {
		listed[o] = true
	}
	for o := range c.v.gcRollups {
		if !listed[o] {
			delete(c.v.gcRollups, o)
		}
	}
	for _, o := range c.rollups {
		_, level, start, _ := manifest.ParseRollupKey(o.Key)
		// The left half of a block the newest commit has not completed:
		// a pusher keeps it in memory and merges it into the block's
		// rollup when the block completes, naming its segments again.
		pending := level < manifest.MaxRollupLevel && start%(1<<(level+1)) == 0 && start+1<<(level+1) > newestSeq
		if pending && start+1<<level <= caughtUpSeq && !c.young(o) && (c.dropCarry(level, start) || writerHere) {
			pending = false // no pusher will merge it
		}
		if level > manifest.MaxRollupLevel || start+1 < base.seq || (!pending && start+1<<level <= caughtUpSeq) {
			doomed = append(doomed, o)
			if !c.young(o) {
				continue
			}
			// Kept for its age: so are the segments it names, which a
			// reader may read through it meanwhile.
		}
		ids, err := c.rollupSegments(ctx, o)
		if errors.Is(err, remote.ErrNotFound) {
			continue // another collector deleted it: it names nothing
		}
		if err != nil {
			return err // its segments are unknown: delete none
		}
		for _, id := range ids {
			live[id] = true
		}
	}
	var segs []remote.ObjectInfo
	for id, o := range c.segments {
		if !live[id] {
			segs = append(segs, o)
		}
	}
	slices.SortFunc(segs, func(a, b remote.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	// The commits go first, oldest first and one at a time: a collection
	// cut short leaves a chain of the newer ones, never a hole in it, so
	// that a reader finding the commit after its version finds every
	// later one.
	if err := c.delete(ctx, commits, true); err != nil {
		return err
	}
	if err := c.delete(ctx, doomed, false); err != nil {
		return err
	}
	return c.sweep(ctx, deferred, segs)
}

// dropCarry makes this process's pusher forget the left half it keeps in
// memory for the rollup of the block starting at start, one level up,
// if the rollup of level at start is that left half, and reports whether
// it did: the collector may then delete the rollup and the segments it
// names, which the block's rollup would otherwise name again (a pusher
// that does not keep it reads it from the remote, and finds it or not).
// A pusher in another process keeps its own, so a collector keeps such
// rollups unless this data directory pushed the newest commit.
func (c *collector) dropCarry(level uint8, start uint64) bool {
	if c.opts.DryRun {
		return false
	}
	v, r := c.v, c.r.replica
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	left := r.levels[level]
	if left == nil || left.FromSeq != start || left.ToSeq != start+1<<level {
		return false
	}
	delete(r.levels, level)
	if r.collected == nil {
		r.collected = map[uint8]uint64{}
	}
	r.collected[level] = start
	return true
}

// sweep deletes those of the checkpoints cks and the unnamed segments
// segs that a collection at least the minimum age ago found unneeded too
// (a garbage list older than the minimum age names them), and lists the
// others for a later collection.
//
// Deleting a segment as soon as no listed object names it would race
// with another collector: one that listed earlier may be about to write
// a checkpoint naming it (a base checkpoint points into old segments),
// and that young checkpoint is not in this listing. Likewise a checkpoint
// newer than this collection's base may be the base of another collector
// with a shorter window, running now, which deletes the commits before
// it. Every object naming a segment is written by a push or collection
// that saw the segment named when it listed, and such a run ends within
// the minimum age (pushes by far; a collection checks itself before it
// writes a checkpoint, see checkFresh). So a segment unnamed in a listing
// begun at t, and still unnamed in one begun at least the minimum age
// after t, is named by nothing written since, nor ever will be; and a
// checkpoint that a collection then still finds unneeded is no other's
// base any more.
func (c *collector) sweep(ctx context.Context, cks, segs []remote.ObjectInfo) error {
	if c.opts.MinAge < 0 {
		// No age protects anything: at once, and the lists go too.
		if err := c.delete(ctx, slices.Concat(cks, segs), false); err != nil {
			return err
		}
		return c.delete(ctx, c.garbage, false)
	}
	prefix := manifest.VolumePrefix(c.v.name)
	due := map[string]bool{}     // found unneeded long enough ago
	listed := map[string]bool{}  // found unneeded before
	var done []remote.ObjectInfo // the lists this run settles
	for _, o := range c.garbage {
		old := !c.young(o)
		rests, err := c.readGarbage(ctx, o)
		if err != nil {
			return err
		}
		for _, r := range rests {
			listed[prefix+r] = true
			if old {
				due[prefix+r] = true
			}
		}
		if old {
			done = append(done, o)
		}
	}
	var now, nowSegs []remote.ObjectInfo
	var later []string
	for _, objs := range [][]remote.ObjectInfo{cks, segs} {
		for _, o := range objs {
			switch {
			case due[o.Key]:
				now = append(now, o)
				continue
			case !listed[o.Key]:
				later = append(later, strings.TrimPrefix(o.Key, prefix))
			}
			c.res.PendingObjects++
			c.res.PendingBytes += o.Size
		}
		now, nowSegs = nowSegs, now
	}
	if len(later) > 0 && !c.opts.DryRun {
		id, err := manifest.NewSegmentID()
		if err != nil {
			return err
		}
		key := manifest.GarbageKey(c.v.name, uint64(c.listed.UnixNano()), id)
		raw := manifest.EncodeGarbage(later)
		if err := c.r.store.Create(ctx, key, raw); err != nil {
			return fmt.Errorf("write garbage list %s: %w", key, err)
		}
		c.written[key] = int64(len(raw))
	}
	// Checkpoints first: the segments they name are unnamed from then on
	// (the next collection lists them).
	if err := c.delete(ctx, nowSegs, false); err != nil {
		return err
	}
	if err := c.delete(ctx, now, false); err != nil {
		return err
	}
	// What a settled list names is gone, or needed again (a later list
	// has it if it is dropped again).
	return c.delete(ctx, done, false)
}

// readGarbage returns the keys, after the volume's prefix, that garbage
// list o names: none if another collection deleted it meanwhile, or if
// it is damaged (it is deleted with the settled ones, and what it named
// is listed again).
func (c *collector) readGarbage(ctx context.Context, o remote.ObjectInfo) ([]string, error) {
	raw, err := c.r.store.Get(ctx, o.Key)
	if errors.Is(err, remote.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read garbage list %s: %w", o.Key, err)
	}
	rests, err := manifest.DecodeGarbage(raw)
	if err != nil {
		c.v.e.opts.Logger.Warn("cambium: damaged garbage list; what it named is listed again", "volume", c.v.name, "key", o.Key, "err", err)
		return nil, nil
	}
	return rests, nil
}

// young reports whether o is younger than the minimum age: never to be
// deleted.
func (c *collector) young(o remote.ObjectInfo) bool {
	return c.opts.MinAge >= 0 && o.Modified.After(c.opts.Now.Add(-c.opts.MinAge))
}

// rollupSegments returns the segments rollup o names, from the volume's
// memory of earlier runs when o is the object read then (a pusher never
// replaces a rollup, but one may be deleted and written again).
func (c *collector) rollupSegments(ctx context.Context, o remote.ObjectInfo) ([]SegmentID, error) {
	v := c.v
	if v.gcRollups == nil {
		v.gcRollups = map[remote.ObjectInfo][]SegmentID{}
	}
	if ids, ok := v.gcRollups[o]; ok {
		return ids, nil
	}
	raw, err := c.r.store.Get(ctx, o.Key)
	if err != nil {
		return nil, fmt.Errorf("read rollup %s: %w", o.Key, err)
	}
	m, err := decodeRemoteMap(o.Key, raw)
	if err != nil {
		return nil, err
	}
	ids := make([]SegmentID, 0, len(m.Segments))
	for _, ref := range m.Segments {
		ids = append(ids, ref.ID)
	}
	v.gcRollups[o] = ids
	return ids, nil
}

// delete deletes objs, except those written by this run or younger than
// the minimum age: concurrently, or one at a time in order.
func (c *collector) delete(ctx context.Context, objs []remote.ObjectInfo, inOrder bool) error {
	var todo []remote.ObjectInfo
	for _, o := range objs {
		if _, ok := c.written[o.Key]; ok {
			continue
		}
		if c.young(o) {
			c.res.KeptYoung++
			continue
		}
		todo = append(todo, o)
	}
	if len(todo) == 0 {
		return nil
	}
	var mu sync.Mutex
	c.opts.Progress(GCProgress{Phase: "delete", Total: len(todo)})
	del := func(ctx context.Context, i int) error {
		o := todo[i]
		if !c.opts.DryRun {
			if err := c.r.store.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("delete %s: %w", o.Key, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		c.res.DeletedObjects++
		c.res.DeletedBytes += o.Size
		c.res.RemoteObjects--
		c.res.RemoteBytes -= o.Size
		c.opts.Progress(GCProgress{Phase: "delete", Done: c.res.DeletedObjects, Total: len(todo)})
		return nil
	}
	if !inOrder {
		return forEach(ctx, len(todo), gcConcurrency, del)
	}
	for i := range todo {
		if err := del(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// forEach calls fn(i) for i in 0..n-1, concurrency at a time, and
// returns the first error (cancelling the calls not yet done).
func forEach(ctx context.Context, n, concurrency int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, concurrency)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// readCheckpoint reads the remote checkpoint of version ver.
func (v *Volume) readCheckpoint(ctx context.Context, r remoteOp, ver Version) (*manifest.Map, error) {
	key := manifest.CheckpointKey(v.name, uint64(ver))
	raw, err := r.store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	m, err := decodeRemoteMap(key, raw)
	if err != nil {
		return nil, err
	}
	if !m.IsCheckpoint() || Version(m.Version) != ver {
		return nil, fmt.Errorf("%w: %s is a level-%d map of version %d, want the checkpoint of %d", ErrRemoteCorrupt, key, m.Level, m.Version, ver)
	}
	return m, nil
}
