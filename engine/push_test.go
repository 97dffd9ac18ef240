package engine

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/internal/testminio"
	"github.com/cambiumdb/cambium/remote"
	_ "github.com/cambiumdb/cambium/remote/s3" // the tests replicate through s3:// too
	"github.com/cambiumdb/cambium/segment"
)

func TestMain(m *testing.M) { testminio.Main(m) }

// testRemote is one remote a test replicates through: its URL (what
// volumes are attached with) and a store handle on it.
type testRemote struct {
	url   string
	store remote.Store
	// open returns another handle on the same remote, as another machine
	// would have.
	open func(t *testing.T) remote.Store
}

// storeKind makes a fresh, empty remote of one kind.
type storeKind struct {
	name string
	new  func(t *testing.T) testRemote
}

// stores returns the object stores every replication test runs against:
// a local directory and a real S3-compatible server. MinIO's
// configuration goes through the environment (t.Setenv), so tests that
// use it cannot be parallel.
func stores(t *testing.T) []storeKind {
	return []storeKind{
		{"file", func(t *testing.T) testRemote { return newFileRemote(t) }},
		{"minio", func(t *testing.T) testRemote {
			srv := testminio.Shared(t)
			srv.Env(t)
			url := "s3://" + srv.NewBucket(t) + "/cambium"
			open := func(t *testing.T) remote.Store {
				s, err := remote.Open(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			return testRemote{url: url, store: open(t), open: open}
		}},
	}
}

// newFileRemote returns an empty file:// remote.
func newFileRemote(t *testing.T) testRemote {
	root := filepath.Join(t.TempDir(), "remote")
	open := func(t *testing.T) remote.Store {
		s, err := remote.NewFileStore(root)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return testRemote{url: "file://" + root, store: open(t), open: open}
}

// forStores runs fn as a subtest per kind of store, each with an empty
// remote.
func forStores(t *testing.T, fn func(t *testing.T, rem testRemote)) {
	for _, k := range stores(t) {
		t.Run(k.name, func(t *testing.T) { fn(t, k.new(t)) })
	}
}

// attach returns volume name of e attached to store, as url.
func attach(t *testing.T, e *Engine, name, url string, store remote.Store) *Volume {
	t.Helper()
	v, err := e.Volume(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Attach(url, store); err != nil {
		t.Fatal(err)
	}
	return v
}

// commitPages commits one version writing the given pages, each filled
// with its tag, and returns the new version.
func commitPages(t *testing.T, v *Volume, tag byte, pages ...PageNo) Version {
	t.Helper()
	return commitWith(t, v, func(txn *Txn) error {
		for _, p := range pages {
			if err := txn.WritePage(p, bytes.Repeat([]byte{tag + byte(p)}, 4096)); err != nil {
				return err
			}
		}
		return nil
	})
}

// commitWith runs fn in a write transaction and commits it; it returns the
// new version.
func commitWith(t testing.TB, v *Volume, fn func(txn *Txn) error) Version {
	t.Helper()
	base := v.Snapshot()
	defer base.Release()
	txn, err := v.Begin(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := fn(txn); err != nil {
		txn.Rollback()
		t.Fatal(err)
	}
	s, err := txn.Commit(Buffered)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	return s.Version()
}

// remoteLog reads a volume's remote commits and checks that they form one
// gap-free chain from version 0: commit i (from 0) is the only object
// claiming its parent, is numbered i+1, starts where commit i-1 ended, and
// names segments that exist with the sizes it records. Each version's
// successor is therefore claimed exactly once.
func remoteLog(t testing.TB, store remote.Store, volume string) []*manifest.Map {
	t.Helper()
	ctx := context.Background()
	objs, err := remote.ListAll(ctx, store, manifest.CommitPrefix(volume))
	if err != nil {
		t.Fatal(err)
	}
	var out []*manifest.Map
	next := uint64(0)
	for i, o := range objs {
		m := mustReadMap(t, store, o.Key)
		if o.Key != manifest.CommitKey(volume, m.Parent) {
			t.Fatalf("%s holds a commit from version %d", o.Key, m.Parent)
		}
		if m.Parent != next || m.Level != 0 || m.FromSeq != uint64(i) || m.ToSeq != uint64(i+1) {
			t.Fatalf("chain broken at %s: commit %d..%d (level %d) of versions %d..%d follows version %d",
				o.Key, m.FromSeq+1, m.ToSeq, m.Level, m.Parent, m.Version, next)
		}
		for _, ref := range m.Segments {
			size, err := store.Size(ctx, manifest.SegmentKey(volume, ref.ID))
			if err != nil || size != ref.Size {
				t.Fatalf("segment %s of %s: %d bytes (%v), map says %d", ref.ID, o.Key, size, err, ref.Size)
			}
		}
		out = append(out, m)
		next = m.Version
	}
	return out
}

// mustReadMap reads and decodes the remote map (commit, rollup or
// checkpoint) at key.
func mustReadMap(t testing.TB, store remote.Store, key string) *manifest.Map {
	t.Helper()
	raw, err := store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeRemoteMap(key, raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// replayRemote rebuilds a volume from its remote log alone, reading whole
// segments, and returns its state after each remote commit, by version.
func replayRemote(t testing.TB, store remote.Store, volume string) map[Version]modelVersion {
	t.Helper()
	ctx := context.Background()
	footers := map[SegmentID]*segment.Footer{}
	objects := map[SegmentID][]byte{}
	cur := modelVersion{pages: map[PageNo][]byte{}}
	out := map[Version]modelVersion{0: cur.clone()}
	for _, m := range remoteLog(t, store, volume) {
		cur.pageSize = int(m.PageSize)
		for p := range cur.pages {
			if uint32(p) > m.PageCount {
				delete(cur.pages, p)
			}
		}
		for p := range roaring.Values(m.Changeset) {
			cur.pages[PageNo(p)] = make([]byte, m.PageSize)
		}
		for _, ref := range m.Segments {
			f, ok := footers[ref.ID]
			if !ok {
				raw, err := store.Get(ctx, manifest.SegmentKey(volume, ref.ID))
				if err != nil {
					t.Fatal(err)
				}
				if f, err = segment.ReadFooter(bytes.NewReader(raw), int64(len(raw))); err != nil {
					t.Fatal(err)
				}
				if f.Salt != ref.Salt || !roaring.AndNot(ref.Pages, f.Pages).IsEmpty() {
					t.Fatalf("segment %s: salt %x holding %v; map says salt %x holding %v", ref.ID, f.Salt, f.Pages.ToArray(), ref.Salt, ref.Pages.ToArray())
				}
				footers[ref.ID], objects[ref.ID] = f, raw
			}
			for p := range roaring.Values(ref.Pages) {
				img, err := f.ReadPage(bytes.NewReader(objects[ref.ID]), PageNo(p), nil)
				if err != nil {
					t.Fatal(err)
				}
				cur.pages[PageNo(p)] = img
			}
		}
		cur.count = m.PageCount
		out[Version(m.Version)] = cur.clone()
	}
	return out
}

// TestVolume_Push: a push uploads the newest image of every page changed
// since the last push, in one remote commit; nothing new sends nothing.
func TestVolume_Push(t *testing.T) {
	forStores(t, func(t *testing.T, rem testRemote) {
		ctx := context.Background()
		e := openTestEngine(t, t.TempDir(), Options{})
		defer e.Close()
		v, _ := e.Volume("tenant/42.db")
		if _, err := v.Push(ctx); !errors.Is(err, ErrNoRemote) {
			t.Fatalf("push without a remote: %v, want ErrNoRemote", err)
		}
		if err := v.Attach(rem.url, rem.store); err != nil {
			t.Fatal(err)
		}
		if err := v.Attach("file:///elsewhere", rem.store); !errors.Is(err, ErrRemoteMismatch) {
			t.Fatalf("attach to another remote: %v, want ErrRemoteMismatch", err)
		}
		if res, err := v.Push(ctx); err != nil || res.To != 0 {
			t.Fatalf("push of an empty volume: %+v %v", res, err)
		}
		commitPages(t, v, 1, 1, 2, 3)
		commitPages(t, v, 2, 2, 4)
		h := commitPages(t, v, 3, 2)
		res, err := v.Push(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.From != 0 || res.To != h || res.Pages != 4 || res.Segments != 1 || res.Requests != 2 || res.BytesWritten == 0 {
			t.Fatalf("first push: %+v (want a segment and a commit)", res)
		}
		// Nothing new: nothing sent.
		if res, err := v.Push(ctx); err != nil || res.From != h || res.To != h || res.Requests != 0 {
			t.Fatalf("second push: %+v %v", res, err)
		}
		// Pages 2 and 5 change; a truncation follows.
		commitPages(t, v, 4, 2, 5)
		h2 := commitWith(t, v, func(txn *Txn) error { return txn.Truncate(4) })
		res, err = v.Push(ctx)
		if err != nil || res.From != h || res.To != h2 || res.Pages != 1 || res.Requests != 3 {
			t.Fatalf("third push: %+v %v (want page 2 only, 5 was cut off; a segment, a commit and a rollup)", res, err)
		}
		log := remoteLog(t, rem.store, v.Name())
		if len(log) != 2 {
			t.Fatalf("%d remote commits, want 2", len(log))
		}
		if c := log[1]; c.PageCount != 4 || c.MinCount != 4 || !c.Changeset.Equals(roaring.BitmapOf(2)) || Version(c.Version) != h2 {
			t.Fatalf("last remote commit: %d pages (min %d), changeset %v, version %d", c.PageCount, c.MinCount, c.Changeset.ToArray(), c.Version)
		}
		// The second commit completes the rollup of commits 1..2.
		raw, err := rem.store.Get(ctx, manifest.RollupKey(v.Name(), 1, 0))
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeRemoteMap("rollup", raw)
		if err != nil || r.Level != 1 || r.Parent != 0 || Version(r.Version) != h2 || r.PageCount != 4 || !r.Changeset.Equals(roaring.BitmapOf(1, 2, 3, 4)) {
			t.Fatalf("rollup %+v %v", r, err)
		}
		snap := v.Snapshot()
		defer snap.Release()
		checkModel(t, snap, replayRemote(t, rem.store, v.Name())[h2])
		if st := v.Replication(); st.Pushed != h2 || st.RemoteVersion != h2 || st.Diverged || st.Remote != rem.url {
			t.Fatalf("replication state: %+v", st)
		}
	})
}

// checkModel compares every page of snap with want.
func checkModel(t testing.TB, snap *Snapshot, want modelVersion) {
	t.Helper()
	if snap.PageCount() != want.count {
		t.Fatalf("version %d has %d pages, want %d", snap.Version(), snap.PageCount(), want.count)
	}
	for p := PageNo(1); uint32(p) <= want.count; p++ {
		got, err := snap.ReadPage(p, nil)
		if err != nil {
			t.Fatalf("version %d page %d: %v", snap.Version(), p, err)
		}
		if !bytes.Equal(got, want.read(p)) {
			t.Fatalf("version %d page %d differs", snap.Version(), p)
		}
	}
}

// A push whose claim's response is lost, or that fails before the claim,
// completes on retry without a duplicate or a gap, also across a restart,
// and uploads its segment once.
func TestVolume_PushRetry(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		fault remote.Fault
	}{{"LostResponse", remote.FailAfter}, {"FailedClaim", remote.FailBefore}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mem := remote.NewMemStore()
			faulty := remote.NewFaultStore(mem, remote.Nth(remote.OpCreate, "", 1, 1, remote.Action{Fault: c.fault}))
			dir := t.TempDir()
			e := openTestEngine(t, dir, Options{})
			v := attach(t, e, "retry", "mem://retry", faulty)
			h := commitPages(t, v, 1, 1, 2)
			if _, err := v.Push(ctx); !errors.Is(err, remote.ErrInjected) {
				t.Fatalf("first push: %v, want the injected fault", err)
			}
			if st := v.Replication(); st.Pushed != 0 || st.Diverged {
				t.Fatalf("after the failed push: %+v", st)
			}
			// Restart between the failed push and its retry.
			e.Close()
			e = openTestEngine(t, dir, Options{})
			defer e.Close()
			v = attach(t, e, "retry", "mem://retry", faulty)
			res, err := v.Push(ctx)
			if err != nil || res.To != h {
				t.Fatalf("retry: %+v %v", res, err)
			}
			segs, _ := remote.ListAll(ctx, mem, manifest.SegmentPrefix("retry"))
			if len(segs) != 1 {
				t.Fatalf("%d segments uploaded; the retry must reuse the first", len(segs))
			}
			if log := remoteLog(t, mem, "retry"); len(log) != 1 || Version(log[0].Version) != h {
				t.Fatalf("remote log %v", log)
			}
			// And the next push goes on from there.
			h2 := commitPages(t, v, 2, 3)
			if res, err := v.Push(ctx); err != nil || res.From != h || res.To != h2 {
				t.Fatalf("next push: %+v %v", res, err)
			}
			snap := v.Snapshot()
			defer snap.Release()
			checkModel(t, snap, replayRemote(t, mem, "retry")[h2])
		})
	}
	// A read-back whose bytes arrive corrupt or short proves nothing: the
	// push must fail and retry, not conclude that another writer won.
	for _, fault := range []remote.Fault{remote.Corrupt, remote.Truncate} {
		t.Run("ReadBack"+strings.ToUpper(fault.String()[:1])+fault.String()[1:], func(t *testing.T) {
			t.Parallel()
			mem := remote.NewMemStore()
			var creates, gets int
			faulty := remote.NewFaultStore(mem, remote.ScheduleFunc(func(r remote.Request) remote.Action {
				switch {
				case r.Op == remote.OpCreate:
					if creates++; creates == 1 {
						return remote.Action{Fault: remote.FailAfter}
					}
				case r.Op == remote.OpGet && strings.Contains(r.Key, "/c/"):
					if gets++; gets == 1 {
						return remote.Action{Fault: fault}
					}
				}
				return remote.Action{}
			}))
			e := openTestEngine(t, t.TempDir(), Options{})
			defer e.Close()
			v := attach(t, e, "rb", "mem://rb", faulty)
			h := commitPages(t, v, 1, 1, 2)
			for i := range 2 {
				if _, err := v.Push(ctx); err == nil || errors.Is(err, ErrDiverged) {
					t.Fatalf("push %d: %v, want an error other than ErrDiverged", i, err)
				}
			}
			if res, err := v.Push(ctx); err != nil || res.To != h {
				t.Fatalf("third push: %+v %v", res, err)
			}
			if st := v.Replication(); st.Diverged || st.Pushed != h {
				t.Fatalf("state %+v", st)
			}
		})
	}
}

// Two writers, one remote: exactly one claims each version; the other is
// told it diverged, keeps its local commits, and changes nothing remotely.
// (TestReplication_Diverged covers racing pushes and Reset.)
func TestVolume_PushDiverged(t *testing.T) {
	forStores(t, func(t *testing.T, rem testRemote) {
		ctx := context.Background()
		a := openTestEngine(t, t.TempDir(), Options{})
		defer a.Close()
		b := openTestEngine(t, t.TempDir(), Options{})
		defer b.Close()
		va := attach(t, a, "shared", rem.url, rem.store)
		vb := attach(t, b, "shared", rem.url, rem.open(t))
		ha := commitPages(t, va, 1, 1, 2)
		commitPages(t, vb, 9, 1)
		hb := commitPages(t, vb, 9, 3)
		if _, err := va.Push(ctx); err != nil {
			t.Fatal(err)
		}
		before, _ := rem.store.Get(ctx, manifest.CommitKey("shared", 0))
		for range 2 {
			if _, err := vb.Push(ctx); !errors.Is(err, ErrDiverged) {
				t.Fatalf("loser's push: %v, want ErrDiverged", err)
			}
		}
		after, _ := rem.store.Get(ctx, manifest.CommitKey("shared", 0))
		if !bytes.Equal(before, after) {
			t.Fatal("the loser changed the winner's commit")
		}
		if h, _, _ := vb.Head(); h != hb {
			t.Fatalf("loser's head %d, want its own %d kept", h, hb)
		}
		if st := vb.Replication(); !st.Diverged || st.Pushed != 0 || st.RemoteVersion != ha {
			t.Fatalf("loser's state %+v, want diverged at 0 knowing remote version %d", st, ha)
		}
		if log := remoteLog(t, rem.store, "shared"); len(log) != 1 || Version(log[0].Version) != ha {
			t.Fatalf("remote log %+v", log)
		}
	})
}

// A remote commit that fails its checks stops a pull with
// ErrRemoteCorrupt naming the object; the volume stays where it was.
func TestVolume_PullErrRemoteCorrupt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rem := newFileRemote(t)
	w := openTestEngine(t, t.TempDir(), Options{})
	defer w.Close()
	wv := attach(t, w, "c", rem.url, rem.store)
	commitPages(t, wv, 1, 1, 2)
	if _, err := wv.Push(ctx); err != nil {
		t.Fatal(err)
	}
	key := manifest.CommitKey("c", 0)
	good, _ := rem.store.Get(ctx, key)
	for _, bad := range [][]byte{
		append(bytes.Clone(good[:40]), good[41:]...), // a byte missing
		func() []byte { b := bytes.Clone(good); b[len(b)/2] ^= 1; return b }(),
		good[:len(good)-4],
	} {
		if err := rem.store.Put(ctx, key, bad); err != nil {
			t.Fatal(err)
		}
		r := openTestEngine(t, t.TempDir(), Options{})
		rv := attach(t, r, "c", rem.url, rem.store)
		_, err := rv.Pull(ctx)
		if !errors.Is(err, ErrRemoteCorrupt) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), key) {
			t.Fatalf("pull of a corrupt commit: %v, want ErrRemoteCorrupt (only) naming %s", err, key)
		}
		_, err = rv.Poll(ctx)
		if !errors.Is(err, ErrRemoteCorrupt) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), key) {
			t.Fatalf("poll of a corrupt commit: %v, want ErrRemoteCorrupt (only) naming %s", err, key)
		}
		if h, _, _ := rv.Head(); h != 0 {
			t.Fatalf("reader moved to %d", h)
		}
		r.Close()
	}
}

// putHook runs fn before the first Put it passes on.
type putHook struct {
	remote.Store
	once sync.Once
	fn   func()
}

func (h *putHook) Put(ctx context.Context, key string, data []byte) error {
	h.once.Do(h.fn)
	return h.Store.Put(ctx, key, data)
}

// TestVolume_PushCountsItsOwnRequests: a push reports the requests and
// bytes it made, not those a reader's lazy fetch makes meanwhile through
// the same remote.
func TestVolume_PushCountsItsOwnRequests(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	we := openTestEngine(t, t.TempDir(), Options{})
	defer we.Close()
	w := attach(t, we, "doc", rem.url, rem.store)
	commitPages(t, w, 1, 1, 2, 3, 4)
	mustPush(t, w)

	re := openTestEngine(t, t.TempDir(), Options{})
	defer re.Close()
	hook := &putHook{Store: rem.store}
	r := attach(t, re, "doc", rem.url, hook)
	mustPull(t, r)
	hook.fn = func() {
		// Page 4 is a stub: reading it fetches its frame.
		snap := r.Snapshot()
		defer snap.Release()
		if _, err := snap.ReadPage(4, nil); err != nil {
			t.Error(err)
		}
	}
	commitPages(t, r, 2, 1)
	before := r.RemoteStats()
	res, err := r.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := r.RemoteStats().Sub(before)
	if all.Op(remote.OpGetRange).Requests == 0 {
		t.Fatalf("no lazy fetch happened during the push: %v", all)
	}
	// The fetch is the reader's, not the push's.
	if want := all.Requests() - all.Op(remote.OpGetRange).Requests; res.Requests != want {
		t.Fatalf("push: %d requests, want %d (the volume made %v)", res.Requests, want, all)
	}
}

// TestVolume_PushIsNoReader: a push reads the pages it uploads from the
// store, not through the read path: it counts no page reads and fills no
// page cache.
func TestVolume_PushIsNoReader(t *testing.T) {
	rem := newFileRemote(t)
	e := openTestEngine(t, t.TempDir(), Options{})
	defer e.Close()
	v := attach(t, e, "doc", rem.url, rem.store)
	commitPages(t, v, 1, 1, 2, 3)
	commitWith(t, v, func(txn *Txn) error { return txn.Truncate(1) })
	commitPages(t, v, 2, 3) // page 2 reads as zeros
	e.cache.dropVolume(v)
	before := v.Stats()
	res := mustPush(t, v)
	if after := v.Stats(); after != before {
		t.Fatalf("push of %d pages moved the read counters: %+v, then %+v", res.Pages, before, after)
	}
	for p := PageNo(1); p <= 3; p++ {
		if _, cached := e.cache.get(v, p, 3, nil); cached {
			t.Fatalf("page %d is in the page cache after the push", p)
		}
	}
	// What it pushed is the volume: a replica reads it back.
	re := openTestEngine(t, t.TempDir(), Options{})
	defer re.Close()
	r := attach(t, re, "doc", rem.url, rem.store)
	mustPull(t, r)
	snap := r.Snapshot()
	defer snap.Release()
	for p, b := range map[PageNo]byte{1: 1 + 1, 2: 0, 3: 2 + 3} {
		got, err := snap.ReadPage(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := bytes.Repeat([]byte{b}, len(got)); !bytes.Equal(got, want) {
			t.Fatalf("page %d reads %x..., want %x...", p, got[:4], want[:4])
		}
	}
}

// TestVolume_PushPendingErrCorrupt: a pending commit in the local
// replication record that does not decode is local damage, ErrCorrupt,
// and the push sends nothing.
func TestVolume_PushPendingErrCorrupt(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	e := openTestEngine(t, t.TempDir(), Options{})
	defer e.Close()
	v := attach(t, e, "c", rem.url, rem.store)
	commitPages(t, v, 1, 1, 2)
	rec := *v.replState.Load()
	rec.pending = []byte("not a commit")
	if err := v.saveRepl(VolumeID(v.id.Load()), rec); err != nil {
		t.Fatal(err)
	}
	res, err := v.Push(ctx)
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrRemoteCorrupt) || res.Requests != 0 {
		t.Fatalf("push with a damaged pending commit: %+v, %v; want ErrCorrupt (only) and no request", res, err)
	}
}
