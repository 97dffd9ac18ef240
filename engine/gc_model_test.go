package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// TestGC_Model: a writer pushes random commits and, at random points, the
// remote is collected with random windows and minimum ages: by the writer,
// by a second collector (a replica on another data directory), or by both
// at once (with the same options; see gcRacing); one collector sometimes
// runs while the writer pushes. Readers on other data
// directories hold snapshots at random versions, local ones (pulled) and
// remote ones (SnapshotAt), across the collections. Every version from the
// oldest one any collection kept reads exactly as the writer wrote it, from
// a cold replica and from the readers; a read of an older version gives the
// writer's bytes or ErrCollected, never other bytes, never a hang; no
// object younger than a collector's minimum age is deleted.
// CAMBIUM_MODEL_SEED sets the seed.
func TestGC_Model(t *testing.T) {
	forModelStores(t, map[string]int{"file": 300, "minio": 100}, 4, func(t *testing.T, rem testRemote, seed uint64, steps int) {
		newGCModel(t, rem, seed).run(steps)
	})
}

// forModelStores runs a model test as a subtest per kind of store, with
// the seed CAMBIUM_MODEL_SEED sets and the size sizes gives the kind
// (divided by short under -short).
func forModelStores(t *testing.T, sizes map[string]int, short int, run func(t *testing.T, rem testRemote, seed uint64, n int)) {
	seed := modelSeed()
	for _, k := range stores(t) {
		n := sizes[k.name]
		if testing.Short() {
			n /= short
		}
		t.Run(fmt.Sprintf("%s/seed=%d", k.name, seed), func(t *testing.T) { run(t, k.new(t), seed, n) })
	}
}

// gcModel is the state of one run of TestGC_Model.
type gcModel struct {
	t   *testing.T
	ctx context.Context
	rng *rand.Rand
	rem testRemote
	w   *volWriter
	// other is the second collector, a replica on its own data directory;
	// cold pulls nothing, so its SnapshotAt reads the remote.
	other, cold *Volume
	replicas    []*Volume    // readers, pulled at random times
	pins        []gcPin      // snapshots held across collections
	pushed      []CommitInfo // the remote's versions, oldest first, with their commit times
	// oldest is the oldest retained version: the newest base any
	// collection chose.
	oldest Version
	stats  struct {
		collections, concurrent, failed, compacted, deleted, keptYoung, collectedReads int
	}
}

// gcPin is a snapshot held across collections.
type gcPin struct {
	s    *Snapshot
	what string
}

const gcModelVolume = "gc/model"

// gcRacing ($CAMBIUM_GC_RACING set) lets two collectors running at once
// have different windows and minimum ages, and a push run with them. It is
// off because they can lose retained versions: a collector deletes the old
// segments its own compaction made dead, which the other's new checkpoint
// (a young object naming old segments, which no minimum age protects) may
// name. Without it, two collectors run at once with the same options while
// no push runs.
var gcRacing = os.Getenv("CAMBIUM_GC_RACING") != ""

func newGCModel(t *testing.T, rem testRemote, seed uint64) *gcModel {
	m := &gcModel{t: t, ctx: context.Background(), rng: rand.New(rand.NewPCG(seed, 0x6c)), rem: rem}
	// Pushes after a collection cannot write the rollups whose halves it
	// deleted: quiet.
	wv := attach(t, newEngine(t, Options{Logger: slog.New(&warnRecorder{})}), gcModelVolume, rem.url, rem.store)
	m.w = newVolWriter(t, wv, seed, 4096)
	m.other = m.newReplica()
	m.cold = m.newReplica()
	t.Cleanup(func() {
		for _, p := range m.pins {
			p.s.Release()
		}
	})
	return m
}

// newReplica returns the model's volume on a new data directory, with its
// own handle on the remote.
func (m *gcModel) newReplica() *Volume {
	return attach(m.t, newEngine(m.t, Options{}), gcModelVolume, m.rem.url, m.rem.open(m.t))
}

func (m *gcModel) run(steps int) {
	t := m.t
	m.w.commit(-1, allPages(24)...)
	m.push()
	for range steps {
		switch r := m.rng.IntN(100); {
		case r < 50:
			for range 1 + m.rng.IntN(2) {
				m.w.step()
			}
			m.push()
		case r < 60:
			m.pin()
		case r < 66:
			m.pinRemote()
		case r < 74:
			if len(m.pins) > 0 {
				m.check(m.pins[m.rng.IntN(len(m.pins))], false)
			}
		case r < 78:
			m.unpin()
		case r < 90:
			m.collect()
		default:
			if len(m.replicas) > 0 {
				s := m.replicas[m.rng.IntN(len(m.replicas))].Snapshot()
				m.check(gcPin{s, "a replica's head"}, false)
				s.Release()
			}
		}
	}
	m.finish()
	t.Logf("%d versions pushed, oldest retained %d; %d collections (%d concurrent, %d failed while concurrent), %d compacted, %d objects deleted, %d kept young; %d reads of collected versions gave ErrCollected",
		len(m.pushed), m.oldest, m.stats.collections, m.stats.concurrent, m.stats.failed, m.stats.compacted, m.stats.deleted, m.stats.keptYoung, m.stats.collectedReads)
	if m.stats.deleted == 0 || m.stats.compacted == 0 {
		t.Fatal("no collection deleted or compacted anything: the test proves nothing")
	}
}

// push pushes the writer's new commits and records the remote version.
func (m *gcModel) push() {
	m.record(mustPush(m.t, m.w.v).To)
}

// record notes that the remote has version ver, with its commit time.
func (m *gcModel) record(ver Version) {
	m.t.Helper()
	log, err := m.w.v.Log()
	if err != nil {
		m.t.Fatal(err)
	}
	i := slices.IndexFunc(log, func(c CommitInfo) bool { return c.Version == ver })
	if i < 0 {
		m.t.Fatalf("pushed version %d is not in the writer's log", ver)
	}
	m.pushed = append(m.pushed, log[i])
}

// index returns the index in m.pushed of remote version ver.
func (m *gcModel) index(ver Version) int {
	i := slices.IndexFunc(m.pushed, func(c CommitInfo) bool { return c.Version == ver })
	if i < 0 {
		m.t.Fatalf("version %d was never pushed", ver)
	}
	return i
}

// pin pulls a replica, new or not, to the newest version and may hold a
// snapshot of it.
func (m *gcModel) pin() {
	t := m.t
	var r *Volume
	if len(m.replicas) < 3 && (len(m.replicas) == 0 || m.rng.IntN(2) == 0) {
		r = m.newReplica()
		m.replicas = append(m.replicas, r)
	} else {
		r = m.replicas[m.rng.IntN(len(m.replicas))]
	}
	if err := within(t, "pull", func() error { _, err := r.Pull(m.ctx); return err }); err != nil {
		t.Fatalf("pull of a replica: %v", err)
	}
	p := gcPin{r.Snapshot(), "a replica's pinned snapshot"}
	if newest := m.pushed[len(m.pushed)-1].Version; p.s.Version() != newest {
		t.Fatalf("replica pulled to %d, the newest is %d", p.s.Version(), newest)
	}
	m.check(p, false)
	if m.rng.IntN(3) == 0 {
		p.s.Release()
		return
	}
	m.pins = append(m.pins, p)
}

// pinRemote holds a snapshot of a random version read from the remote.
func (m *gcModel) pinRemote() {
	ver := m.pushed[m.rng.IntN(len(m.pushed))].Version
	var s *Snapshot
	err := within(m.t, "SnapshotAt", func() (err error) { s, err = m.cold.SnapshotAt(m.ctx, ver); return err })
	if m.judge("SnapshotAt", ver, err) {
		p := gcPin{s, "a remote snapshot"}
		m.check(p, false)
		m.pins = append(m.pins, p)
	}
}

// unpin checks and releases a random pinned snapshot.
func (m *gcModel) unpin() {
	if len(m.pins) == 0 {
		return
	}
	i := m.rng.IntN(len(m.pins))
	m.check(m.pins[i], true)
	m.pins[i].s.Release()
	m.pins = slices.Delete(m.pins, i, i+1)
}

// check reads p's pages, all of them or a few at random, and judges the
// reads.
func (m *gcModel) check(p gcPin, all bool) {
	m.t.Helper()
	want, ok := m.w.hist[p.s.Version()]
	if !ok {
		m.t.Fatalf("%s at version %d, which the writer never had", p.what, p.s.Version())
	}
	var pages []PageNo
	for pg := PageNo(1); uint32(pg) <= want.count; pg++ {
		if all || m.rng.IntN(8) == 0 {
			pages = append(pages, pg)
		}
	}
	err := within(m.t, "read", func() error { return readVersion(p.s, want, pages) })
	m.judge(p.what, p.s.Version(), err)
}

// errWrongBytes marks a read that gave other bytes than the writer wrote.
var errWrongBytes = errors.New("wrong bytes")

// readVersion reads pages of s and compares them with want. A read that
// fails with ErrCollected does not stop it: the pages after it must still
// read right or fail so.
func readVersion(s *Snapshot, want modelVersion, pages []PageNo) error {
	if s.PageCount() != want.count {
		return fmt.Errorf("%w: version %d has %d pages, want %d", errWrongBytes, s.Version(), s.PageCount(), want.count)
	}
	var collected error
	for _, p := range pages {
		got, err := s.ReadPage(p, nil)
		switch {
		case errors.Is(err, ErrCollected):
			if collected == nil {
				collected = err
			}
		case err != nil:
			return fmt.Errorf("page %d: %w", p, err)
		case !bytes.Equal(got, want.read(p)):
			return fmt.Errorf("%w: version %d page %d", errWrongBytes, s.Version(), p)
		}
	}
	return collected
}

// allPages returns pages 1..n.
func allPages(n uint32) []PageNo {
	out := make([]PageNo, n)
	for i := range out {
		out[i] = PageNo(i + 1)
	}
	return out
}

// judge is judgeRead with the model's oldest retained version; it reports
// whether err is nil.
func (m *gcModel) judge(what string, ver Version, err error) bool {
	m.t.Helper()
	if judgeRead(m.t, what, ver, m.oldest, err) {
		m.stats.collectedReads++
	}
	return err == nil
}

// judgeRead fails the test if err is not what a read of version ver may
// give when the oldest retained version is oldest: nothing for a retained
// version; nothing or ErrCollected for an older one. It reports whether
// err is ErrCollected.
func judgeRead(t testing.TB, what string, ver, oldest Version, err error) bool {
	t.Helper()
	switch {
	case err == nil:
		return false
	case ver >= oldest:
		t.Fatalf("%s: version %d, retained (the oldest retained is %d): %v", what, ver, oldest, err)
	case !errors.Is(err, ErrCollected) || errors.Is(err, errWrongBytes):
		t.Fatalf("%s: version %d, older than the oldest retained (%d): %v; want its bytes or ErrCollected", what, ver, oldest, err)
	}
	return true
}

// within runs fn and returns its error, failing the test if fn has not
// returned after three minutes (longer than any remote request may take):
// reads and collections must not hang.
func within(t testing.TB, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(3 * time.Minute):
		t.Fatalf("%s: no answer after 3 minutes", what)
		return nil
	}
}

// gcRun is one collector's part in a collection.
type gcRun struct {
	v    *Volume
	opts GCOptions
	// want is the index in pushed of the base the window asks for, -1
	// for RetainForever.
	want int
	res  GCResult
	err  error
}

// options draws a collection's options: a window whose start is a
// pushed version's commit time (so the base is known), with a clock that
// is now or a past commit's time; a minimum age that deletes regardless
// (unless safe is set: others write to the remote meanwhile), or that
// keeps everything, or that keeps what was written after a pushed
// version.
func (m *gcModel) options(safe bool) (GCOptions, int) {
	p := m.pushed
	last, oldIdx := len(p)-1, 0
	if m.oldest > 0 {
		oldIdx = m.index(m.oldest)
	}
	b := -1
	switch r := m.rng.IntN(10); {
	case r < 1: // forever
	case r < 3:
		b = m.rng.IntN(last + 1)
	default:
		b = oldIdx + m.rng.IntN(last-oldIdx+1)
	}
	now := time.Now().Round(0)
	if b >= 0 && m.rng.IntN(2) == 0 {
		now = p[b+m.rng.IntN(last-b+1)].Time
	}
	opts := GCOptions{Now: now, Retain: RetainForever}
	want := -1
	if b >= 0 {
		opts.Retain = now.Sub(p[b].Time)
		want = sort.Search(len(p), func(i int) bool { return p[i].Time.After(p[b].Time) }) - 1
	}
	opts.MinAge = 1000 * time.Hour
	switch m.rng.IntN(3) {
	case 0:
		if !safe {
			opts.MinAge = -1
		}
	case 1:
		if d := now.Sub(p[m.rng.IntN(last+1)].Time); d > 0 {
			opts.MinAge = d
		}
	}
	return opts, want
}

// collect runs one collection: by the writer, the second collector or
// both at once, maybe while the writer pushes.
func (m *gcModel) collect() {
	t := m.t
	var runs []*gcRun
	switch m.rng.IntN(3) {
	case 0:
		runs = []*gcRun{{v: m.w.v}}
	case 1:
		runs = []*gcRun{{v: m.other}}
	default:
		runs = []*gcRun{{v: m.w.v}, {v: m.other}}
	}
	pushing := m.rng.IntN(3) == 0 && (len(runs) == 1 || gcRacing)
	safe := len(runs) > 1 || pushing
	for i, r := range runs {
		if r.v == m.other {
			// Compaction needs the newest version.
			if err := within(t, "pull", func() error { _, err := m.other.Pull(m.ctx); return err }); err != nil {
				t.Fatalf("pull of the second collector: %v", err)
			}
		}
		if i > 0 && !gcRacing {
			r.opts, r.want = runs[0].opts, runs[0].want
			continue
		}
		r.opts, r.want = m.options(safe)
	}

	// What no collector may delete: what is younger than every minimum
	// age.
	var youngAfter time.Time
	protect := true
	for _, r := range runs {
		if r.opts.MinAge < 0 {
			protect = false
			continue
		}
		from := r.opts.Now.Add(-r.opts.MinAge)
		if from.After(youngAfter) {
			youngAfter = from
		}
		if safe {
			// What others write from now on must be young to every
			// collector, whatever the granularity of the store's clock.
			time.Sleep(time.Until(from.Add(20 * time.Millisecond)))
		}
	}
	var young []string
	before, err := remote.ListAll(m.ctx, m.rem.store, manifest.VolumePrefix(gcModelVolume))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range before {
		if protect && o.Modified.After(youngAfter) {
			young = append(young, o.Key)
		}
	}

	var (
		wg      sync.WaitGroup
		pushed  PushResult
		pushErr error
	)
	if pushing {
		m.w.step()
		wg.Add(1)
		go func() { defer wg.Done(); pushed, pushErr = m.w.v.Push(m.ctx) }()
	}
	for _, r := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); r.res, r.err = r.v.GC(m.ctx, r.opts) }()
	}
	within(t, "collection", func() error { wg.Wait(); return nil })
	if pushErr != nil {
		t.Fatalf("push during a collection: %v", pushErr)
	}
	if pushing {
		m.record(pushed.To)
	}

	m.stats.collections++
	if len(runs) > 1 {
		m.stats.concurrent++
	}
	for _, r := range runs {
		if r.err != nil && len(runs) > 1 {
			// The other collector may have deleted what this one read
			// meanwhile; run alone, it must succeed.
			t.Logf("concurrent collection: %v; again, alone", r.err)
			m.stats.failed++
			m.oldest = max(m.oldest, r.res.OldestVersion)
			r.res, r.err = r.v.GC(m.ctx, r.opts)
		}
		if r.err != nil {
			t.Fatalf("collection with %+v: %v", r.opts, r.err)
		}
	}
	prev := max(m.oldest, m.pushed[0].Version)
	for _, r := range runs {
		res := r.res
		who := "writer"
		if r.v == m.other {
			who = "other"
		}
		t.Logf("collection by the %s (of %d, pushing %v): window from %d, min age %v (young after %s): oldest %d, newest %d, checkpoint %d, compacted %v, deleted %d, kept young %d",
			who, len(runs), pushing, r.want, r.opts.MinAge, r.opts.Now.Add(-r.opts.MinAge).Format("15:04:05.000000"), res.OldestVersion, res.NewestVersion, res.CheckpointVersion, res.Compacted, res.DeletedObjects, res.KeptYoung)
		m.oldest = max(m.oldest, res.OldestVersion)
		if res.Compacted {
			m.stats.compacted++
		}
		m.stats.deleted += res.DeletedObjects
		m.stats.keptYoung += res.KeptYoung
		if r.want < 0 {
			if res.OldestVersion > prev && len(runs) == 1 {
				t.Fatalf("collection keeping every version: oldest %d, yet %d was retained", res.OldestVersion, prev)
			}
			continue
		}
		want := m.pushed[r.want].Version
		if res.OldestVersion < want || (len(runs) == 1 && res.OldestVersion > max(want, prev)) {
			t.Fatalf("collection with a window from version %d's commit (oldest retained before: %d): oldest version %d; %+v", want, prev, res.OldestVersion, res)
		}
	}

	after, err := remote.ListAll(m.ctx, m.rem.store, manifest.VolumePrefix(gcModelVolume))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range young {
		if _, ok := slices.BinarySearchFunc(after, key, func(o remote.ObjectInfo, k string) int { return strings.Compare(o.Key, k) }); !ok {
			t.Fatalf("%s, younger than every collector's minimum age (written after %s), was deleted", key, youngAfter.Format(time.RFC3339Nano))
		}
	}
	if len(runs) == 1 && !pushing && runs[0].opts.MinAge < 0 {
		checkLayout(t, m.rem.store, gcModelVolume, runs[0].res.OldestVersion)
	}
	m.checkCold()
}

// checkCold reads, from the remote alone, the newest version, the oldest
// retained one and a few in between, exactly, and a few older ones (their
// bytes or ErrCollected); the remote's log lists every retained version,
// and restore by time finds them.
func (m *gcModel) checkCold() {
	t := m.t
	p := m.pushed
	i0 := m.index(max(m.oldest, p[0].Version))
	idx := []int{len(p) - 1, i0, i0 + m.rng.IntN(len(p)-i0), i0 + m.rng.IntN(len(p)-i0)}
	if i0 > 0 {
		idx = append(idx, m.rng.IntN(i0), m.rng.IntN(i0))
	}
	for _, i := range idx {
		ver := p[i].Version
		err := within(t, "SnapshotAt", func() error {
			s, err := m.cold.SnapshotAt(m.ctx, ver)
			if err != nil {
				return err
			}
			defer s.Release()
			return readVersion(s, m.w.hist[ver], allPages(s.PageCount()))
		})
		m.judge("a cold replica's SnapshotAt", ver, err)

		at, when, err := m.cold.VersionAt(m.ctx, p[i].Time)
		if i >= i0 && (err != nil || at != ver || !when.Equal(p[i].Time)) {
			t.Fatalf("VersionAt(%s), retained version %d's commit time: %d at %s, %v", p[i].Time, ver, at, when, err)
		}
		if i < i0 && err != nil && !errors.Is(err, ErrCollected) {
			t.Fatalf("VersionAt(%s), version %d's commit time, before the window: %v; want a version or ErrCollected", p[i].Time, ver, err)
		}
	}
	log, err := m.cold.RemoteLog(m.ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[Version]bool{}
	for _, c := range log {
		listed[c.Version] = true
	}
	for _, c := range p[i0:] {
		if !listed[c.Version] {
			t.Fatalf("the remote log lacks retained version %d", c.Version)
		}
	}
}

// finish checks every pinned snapshot, collects everything but the newest
// version, and checks that the remote has nothing else, that the replicas
// catch up, and that the pinned snapshots still read right or say
// ErrCollected.
func (m *gcModel) finish() {
	t := m.t
	for _, p := range m.pins {
		m.check(p, true)
	}
	m.w.step()
	m.push()
	res, err := m.w.v.GC(m.ctx, GCOptions{Retain: 0, MinAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	newest := m.pushed[len(m.pushed)-1].Version
	if res.OldestVersion != newest {
		t.Fatalf("collection keeping the newest version only: %+v", res)
	}
	m.oldest = newest
	checkLayout(t, m.rem.store, gcModelVolume, newest)
	m.checkCold()
	for _, p := range m.pins {
		m.check(p, true)
	}
	for _, r := range append(m.replicas, m.other) {
		if err := within(t, "pull", func() error { _, err := r.Pull(m.ctx); return err }); err != nil {
			t.Fatalf("pull of a replica: %v", err)
		}
		checkHead(t, r, m.w.cur)
	}
}

// checkLayout checks that a volume's remote holds what a finished
// collection with base version base leaves: commits from the one ending at
// base on, in one chain; no checkpoint older than base; no rollup covering
// a deleted commit; every segment a commit or checkpoint names, with its
// size, and no other.
func checkLayout(t testing.TB, store remote.Store, volume string, base Version) {
	t.Helper()
	ctx := context.Background()
	objs, err := remote.ListAll(ctx, store, manifest.VolumePrefix(volume))
	if err != nil {
		t.Fatal(err)
	}
	var maps []*manifest.Map
	var commits []*manifest.Map
	var rollups []*manifest.Map
	segs := map[SegmentID]int64{}
	for _, o := range objs {
		if _, id, ok := manifest.ParseSegmentKey(o.Key); ok {
			segs[id] = o.Size
			continue
		}
		if _, _, _, ok := manifest.ParseRollupKey(o.Key); ok {
			m := mustReadMap(t, store, o.Key)
			rollups = append(rollups, m)
			maps = append(maps, m) // its level segment, if any, is named
			continue
		}
		m := mustReadMap(t, store, o.Key)
		if _, ver, ok := manifest.ParseCheckpointKey(o.Key); ok {
			if !m.IsCheckpoint() || m.Version != ver || Version(ver) < base {
				t.Fatalf("%s: a level-%d map of version %d; the collection kept versions from %d", o.Key, m.Level, m.Version, base)
			}
		} else {
			commits = append(commits, m)
		}
		maps = append(maps, m)
	}
	if len(commits) == 0 {
		t.Fatal("no commits")
	}
	if Version(commits[0].Version) != base {
		t.Fatalf("the oldest commit ends at %d; want it to end at the base, %d", commits[0].Version, base)
	}
	for i := 1; i < len(commits); i++ {
		if commits[i].Parent != commits[i-1].Version || commits[i].FromSeq != commits[i-1].ToSeq {
			t.Fatalf("commit %d from version %d follows commit %d ending at %d", commits[i].ToSeq, commits[i].Parent, commits[i-1].ToSeq, commits[i-1].Version)
		}
	}
	for _, r := range rollups {
		if r.ToSeq < commits[0].ToSeq {
			t.Fatalf("a rollup of commits %d..%d covers only collected commits (the oldest kept is %d)", r.FromSeq+1, r.ToSeq, commits[0].ToSeq)
		}
	}
	named := map[SegmentID]bool{}
	for _, m := range maps {
		for _, ref := range m.Segments {
			named[ref.ID] = true
			if size, ok := segs[ref.ID]; !ok || size != ref.Size {
				t.Fatalf("segment %s of the map of version %d: %d bytes (there: %v), the map says %d", ref.ID, m.Version, size, ok, ref.Size)
			}
		}
	}
	for id := range segs {
		if !named[id] {
			t.Fatalf("segment %s is named by no commit or checkpoint", id)
		}
	}
}
