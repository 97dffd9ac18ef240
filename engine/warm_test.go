package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// TestReplication_LevelSegments: rollups of levels 2, 5, 8... name a dense
// level segment holding every page their commits changed, at their
// version, unless those are half the volume or more (an import, whose own
// segments are dense already); a replica catching up reads every page as
// the writer wrote it.
func TestReplication_LevelSegments(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	r := newReplica(t, rem)
	w, wr, _ := gcWriter(t, rem, 1, nil)
	var all []PageNo
	for p := PageNo(1); p <= 400; p++ {
		all = append(all, p)
	}
	wr.commit(-1, all...)
	mustPush(t, w) // commit 2: the whole volume
	for i := range 62 {
		wr.commit(-1, PageNo(1+(i*37)%400), PageNo(1+(i*91)%400))
		mustPush(t, w)
	}
	rollup := func(level uint8, start uint64) *manifest.Map {
		t.Helper()
		raw, err := rem.store.Get(ctx, manifest.RollupKey("doc", level, start))
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.DecodeMap(raw)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, b := range []struct {
		level uint8
		start uint64
	}{{2, 4}, {5, 32}} {
		m := rollup(b.level, b.start)
		if len(m.Segments) != 1 || !m.Segments[0].Pages.Equals(m.Changeset) {
			t.Fatalf("rollup of level %d from commit %d names %d segments; want one level segment holding all %d of its pages",
				m.Level, b.start+1, len(m.Segments), m.Changeset.GetCardinality())
		}
	}
	if m := rollup(5, 0); len(m.Segments) == 1 {
		t.Fatalf("the rollup of the import's block has a level segment of its own")
	}
	mustPull(t, r)
	if _, err := r.Hydrate(ctx); err != nil {
		t.Fatal(err)
	}
	checkHead(t, r, wr.cur)
}

// TestReplication_Rewarm: after a pull, the pages the replica had stored
// and the pull changed are fetched again in the background, so that
// reading them costs no request; with SetWarm(false) they are not.
func TestReplication_Rewarm(t *testing.T) {
	for _, warm := range []bool{true, false} {
		t.Run(map[bool]string{true: "On", false: "Off"}[warm], func(t *testing.T) {
			ctx := context.Background()
			rem := newFileRemote(t)
			var r *Volume
			_, wr, _ := gcWriter(t, rem, 40, func(i int) {
				if i == 19 {
					r = newReplica(t, rem)
					r.SetWarm(warm)
					mustPull(t, r)
					if _, err := r.Hydrate(ctx); err != nil {
						t.Fatal(err)
					}
				}
			})
			before := r.stats.rewarms.Load()
			_, stored, _ := r.Head() // every page up to here is stored
			mustPull(t, r)
			if err := r.Warmed(ctx); err != nil {
				t.Fatal(err)
			}
			if warm && r.stats.rewarms.Load() == before {
				t.Fatal("no rewarm after the pull")
			}
			reqs := r.RemoteStats().Requests()
			snap := r.Snapshot()
			defer snap.Release()
			for p := PageNo(1); uint32(p) <= min(stored, snap.PageCount()); p++ {
				img, err := snap.ReadPage(p, nil)
				if err != nil || !bytes.Equal(img, wr.cur.read(p)) {
					t.Fatalf("page %d: %v, or not the writer's", p, err)
				}
			}
			got := r.RemoteStats().Requests() - reqs
			checkHead(t, r, wr.cur)
			if warm && got != 0 {
				t.Fatalf("reading the rewarmed replica made %d requests, want 0", got)
			}
			if !warm && got == 0 {
				t.Fatalf("reading a replica that does not rewarm made no requests")
			}
		})
	}
}

// TestReplication_CatchUpReads: a replica that caught up reads the pages
// the pull changed, in random order, in far fewer requests than pages:
// each read fetches the pull's frames around its own in the level segment.
func TestReplication_CatchUpReads(t *testing.T) {
	rem := newFileRemote(t)
	var r *Volume
	var stored uint32
	w, wr, _ := gcWriter(t, rem, 1, nil)
	var all []PageNo
	for p := PageNo(1); p <= 400; p++ {
		all = append(all, p)
	}
	wr.commit(-1, all...)
	mustPush(t, w)
	r = newReplica(t, rem)
	r.SetWarm(false)
	mustPull(t, r)
	_, stored, _ = r.Head()
	for i := range 64 {
		wr.commit(-1, PageNo(1+(i*37)%int(stored)), PageNo(1+(i*91)%int(stored)))
		mustPush(t, w)
	}
	res := mustPull(t, r)
	snap := r.Snapshot()
	defer snap.Release()
	changed := res.changed.ToArray()
	for i := range changed {
		j := (i * 7919) % len(changed)
		changed[i], changed[j] = changed[j], changed[i]
	}
	before := r.RemoteStats().Requests()
	for _, p := range changed {
		img, err := snap.ReadPage(PageNo(p), nil)
		if err != nil || !bytes.Equal(img, wr.cur.read(PageNo(p))) {
			t.Fatalf("page %d: %v, or not the writer's", p, err)
		}
	}
	got := r.RemoteStats().Requests() - before
	t.Logf("%d changed pages read in %d requests", len(changed), got)
	if got*4 > int64(len(changed)) {
		t.Fatalf("%d changed pages read in %d requests; want at most a quarter as many", len(changed), got)
	}
}

// TestReplication_CatchUpModel: a writer pushes commits one by one, enough
// that level segments exist at several levels, with collections (with
// windows, compacting) between pushes; replicas that pull at random
// intervals, with rewarm on or off, read every page their pull changed,
// in random order, and random others. Every read gives the writer's bytes
// at the replica's version, whichever kind of segment served it (level
// segment, checkpoint, original). Some pulls and their reads go through a
// remote that fails, truncates and corrupts reads on a schedule: then a
// read gives the writer's bytes or a clear error, never other bytes, and
// once the faults stop, every page reads right. CAMBIUM_MODEL_SEED sets
// the seed.
func TestReplication_CatchUpModel(t *testing.T) {
	forModelStores(t, map[string]int{"file": 300, "minio": 70}, 3, func(t *testing.T, rem testRemote, seed uint64, commits int) {
		newCatchUpModel(t, rem, seed).run(commits)
	})
}

// segmentKind is what wrote a segment: a push (its commit's own pages), a
// rollup (a level segment) or a collection (a checkpoint's compaction).
type segmentKind int

const (
	kindOriginal segmentKind = iota
	kindLevel
	kindCheckpoint
)

var segmentKindNames = [...]string{kindOriginal: "original", kindLevel: "level segment", kindCheckpoint: "checkpoint"}

func (k segmentKind) String() string { return segmentKindNames[k] }

// catchUpModel is the state of one run of TestReplication_CatchUpModel.
type catchUpModel struct {
	t        *testing.T
	ctx      context.Context
	rng      *rand.Rand
	rem      testRemote
	w        *volWriter
	replicas []*catchUpReplica
	seen     map[string]bool // the map objects read by learnKinds
	levels   map[uint8]bool  // the levels of the rollups that named a level segment
	mu       struct {
		sync.Mutex
		kinds  map[manifest.SegmentID]segmentKind // of every segment the remote named so far
		served [3]int                             // ranged reads of segments, by kind
	}
	stats struct {
		pulls, faultyPulls, failedPulls, failedReads, collections, compacted int
	}
}

// catchUpReplica is a replica of the model, on its own data directory,
// reading the remote through a FaultStore; every ranged read of a segment
// it makes is counted by the segment's kind.
type catchUpReplica struct {
	v      *Volume
	faults *remote.FaultStore
	every  int // pulls after about every this many pushes
}

const catchUpVolume = "doc"

func newCatchUpModel(t *testing.T, rem testRemote, seed uint64) *catchUpModel {
	m := &catchUpModel{t: t, ctx: context.Background(), rng: rand.New(rand.NewPCG(seed, 0xcafe)), rem: rem,
		seen: map[string]bool{}, levels: map[uint8]bool{}}
	m.mu.kinds = map[manifest.SegmentID]segmentKind{}
	// Pushes after a collection cannot write the rollups whose halves it
	// deleted: quiet.
	wv := attach(t, newEngine(t, Options{Logger: slog.New(&warnRecorder{})}), catchUpVolume, rem.url, rem.store)
	m.w = newVolWriter(t, wv, seed, 4096)
	// Pulls a few commits apart read originals; those hundreds apart read
	// level segments of every level.
	for _, every := range []int{3, 20, 120} {
		faults := remote.NewFaultStore(rem.open(t), nil)
		r := &catchUpReplica{faults: faults, every: every}
		r.v = attach(t, newEngine(t, Options{Logger: slog.New(&warnRecorder{})}), catchUpVolume, rem.url, &servedBy{Store: faults, m: m})
		m.replicas = append(m.replicas, r)
	}
	return m
}

// servedBy counts the ranged reads of segments by kind.
type servedBy struct {
	remote.Store
	m *catchUpModel
}

func (s *servedBy) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	b, err := s.Store.GetRange(ctx, key, off, n)
	if _, id, ok := manifest.ParseSegmentKey(key); ok && err == nil {
		s.m.mu.Lock()
		kind, known := s.m.mu.kinds[id]
		s.m.mu.served[kind]++
		s.m.mu.Unlock()
		if !known {
			s.m.t.Errorf("a read of segment %s, which no commit, rollup or checkpoint named", id)
		}
	}
	return b, err
}

func (m *catchUpModel) run(commits int) {
	t := m.t
	const pages = 1500 // a block of 256 commits changes less than half of them
	m.w.commit(-1, allPages(pages)...)
	m.push()
	for _, r := range m.replicas {
		m.pull(r, false)
	}
	for i := range commits {
		// A third of the writes go to 40 hot pages, the rest anywhere:
		// a pull's pieces supersede one another's pages.
		var ps []PageNo
		for range 1 + m.rng.IntN(4) {
			if m.rng.IntN(3) == 0 {
				ps = append(ps, PageNo(1+m.rng.IntN(40)))
			} else {
				ps = append(ps, PageNo(1+m.rng.IntN(pages)))
			}
		}
		m.w.commit(-1, ps...)
		m.push()
		if m.rng.IntN(25) == 0 {
			m.collect()
		}
		for _, r := range m.replicas {
			if m.rng.IntN(r.every) == 0 || i == commits-1 {
				m.pull(r, m.rng.IntN(3) == 0)
			}
		}
	}
	levels := slices.Sorted(maps.Keys(m.levels))
	t.Logf("%d pulls (%d through faults, %d of them failed; %d reads failed), %d collections (%d compacted); level segments at levels %v; ranged reads served: %d by level segments, %d by checkpoints, %d by originals",
		m.stats.pulls, m.stats.faultyPulls, m.stats.failedPulls, m.stats.failedReads, m.stats.collections, m.stats.compacted, levels,
		m.mu.served[kindLevel], m.mu.served[kindCheckpoint], m.mu.served[kindOriginal])
	// The checks that the run proved something: a short run (a few dozen
	// commits) may not reach every kind of segment, and only says so.
	prove := t.Errorf
	if testing.Short() {
		prove = t.Logf
	}
	for k, n := range m.mu.served {
		if n == 0 {
			prove("no read was served by a segment of kind %s: the test proves nothing about them", segmentKind(k))
		}
	}
	// Collections delete the rollups (and level segments) that end at
	// or before a compacted checkpoint, so a short run between them
	// reaches only the lowest level.
	if len(levels) < 2 && commits >= 200 || len(levels) == 0 {
		prove("level segments at levels %v; want several", levels)
	}
	if m.stats.compacted == 0 || m.stats.failedReads+m.stats.failedPulls == 0 {
		prove("no collection compacted, or no fault reached a pull or read: the test proves nothing")
	}
}

// push pushes the writer's commit and names the kinds of the segments it
// wrote.
func (m *catchUpModel) push() {
	mustPush(m.t, m.w.v)
	m.learnKinds()
}

// learnKinds reads the map objects the remote gained and names the kind of
// each segment at its first mention: commits first (a rollup without a
// level segment names their segments), then rollups, then checkpoints.
func (m *catchUpModel) learnKinds() {
	t := m.t
	for _, p := range []struct {
		prefix string
		kind   segmentKind
	}{{manifest.CommitPrefix(catchUpVolume), kindOriginal}, {manifest.RollupPrefix(catchUpVolume), kindLevel}, {manifest.CheckpointPrefix(catchUpVolume), kindCheckpoint}} {
		objs, err := remote.ListAll(m.ctx, m.rem.store, p.prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if m.seen[o.Key] {
				continue
			}
			m.seen[o.Key] = true
			raw, err := m.rem.store.Get(m.ctx, o.Key)
			if err != nil {
				t.Fatal(err)
			}
			mp, err := manifest.DecodeMap(raw)
			if err != nil {
				t.Fatalf("%s: %v", o.Key, err)
			}
			m.mu.Lock()
			for _, ref := range mp.Segments {
				if _, known := m.mu.kinds[ref.ID]; !known {
					m.mu.kinds[ref.ID] = p.kind
					if p.kind == kindLevel {
						m.levels[mp.Level] = true
					}
				}
			}
			m.mu.Unlock()
		}
	}
}

// collect collects the remote from the writer, with a window from a
// random recent version, deleting at once.
func (m *catchUpModel) collect() {
	log, err := m.w.v.Log()
	if err != nil {
		m.t.Fatal(err)
	}
	base := log[max(0, len(log)-1-m.rng.IntN(60))]
	now := time.Now()
	res, err := m.w.v.GC(m.ctx, GCOptions{Retain: now.Sub(base.Time), MinAge: -1, Now: now})
	if err != nil {
		m.t.Fatalf("collection: %v", err)
	}
	m.stats.collections++
	if res.Compacted {
		m.stats.compacted++
	}
	m.learnKinds()
}

// pull pulls replica r, through faults if faulty, and reads every page the
// pull changed and some others.
func (m *catchUpModel) pull(r *catchUpReplica, faulty bool) {
	t := m.t
	m.stats.pulls++
	r.v.SetWarm(m.rng.IntN(2) == 0)
	if faulty {
		m.stats.faultyPulls++
		actions := []remote.Action{{Fault: remote.FailBefore}, {Fault: remote.FailAfter}, {Fault: remote.Truncate}, {Fault: remote.Corrupt}}
		r.faults.SetSchedule(remote.Random(m.rng.Uint64(), 0.2, actions, remote.OpGet, remote.OpGetRange, remote.OpList))
	}
	var res PullResult
	err := within(t, "pull", func() (err error) { res, err = r.v.Pull(m.ctx); return err })
	if err != nil {
		if !faulty {
			t.Fatalf("pull: %v", err)
		}
		m.stats.failedPulls++
		checkClearError(t, "pull through faults", err)
		r.faults.SetSchedule(nil)
		if err := within(t, "pull", func() (err error) { res, err = r.v.Pull(m.ctx); return err }); err != nil {
			t.Fatalf("pull once the faults stopped: %v", err)
		}
	}
	snap := r.v.Snapshot()
	defer snap.Release()
	want, ok := m.w.hist[snap.Version()]
	if !ok || snap.Version() != m.w.v.head.Load().version {
		t.Fatalf("replica pulled to version %d; the writer's head is %d", snap.Version(), m.w.v.head.Load().version)
	}
	var pages []PageNo
	if res.changed != nil {
		for p := range roaring.Values(res.changed) {
			pages = append(pages, PageNo(p))
		}
	}
	for range 20 {
		pages = append(pages, PageNo(1+m.rng.IntN(int(want.count))))
	}
	m.rng.Shuffle(len(pages), func(i, j int) { pages[i], pages[j] = pages[j], pages[i] })
	var failed []PageNo
	for _, p := range pages {
		var img []byte
		err := within(t, "read", func() (err error) { img, err = snap.ReadPage(p, nil); return err })
		switch {
		case err != nil && faulty:
			checkClearError(t, fmt.Sprintf("read of page %d through faults", p), err)
			failed = append(failed, p)
		case err != nil:
			t.Fatalf("version %d, page %d: %v", snap.Version(), p, err)
		case !bytes.Equal(img, want.read(p)):
			t.Fatalf("version %d, page %d: not the writer's bytes", snap.Version(), p)
		}
	}
	m.stats.failedReads += len(failed)
	r.faults.SetSchedule(nil)
	if err := readVersion(snap, want, failed); err != nil {
		t.Fatalf("reads once the faults stopped: %v", err)
	}
	if err := r.v.Warmed(m.ctx); err != nil {
		t.Fatal(err)
	}
}

// checkClearError fails the test unless err says that the remote failed
// or gave damaged bytes.
func checkClearError(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, remote.ErrInjected) && !errors.Is(err, ErrRemoteCorrupt) {
		t.Fatalf("%s: %v; want an injected failure or ErrRemoteCorrupt", what, err)
	}
}
