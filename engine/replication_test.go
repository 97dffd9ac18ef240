package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// newEngine opens an engine on a new directory, closed when the test ends.
func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	e := openTestEngine(t, t.TempDir(), opts)
	t.Cleanup(func() { e.Close() })
	return e
}

// warnRecorder is a slog handler that keeps the engine's warnings, for
// tests that must see none.
type warnRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (h *warnRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *warnRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	h.mu.Lock()
	h.msgs = append(h.msgs, b.String())
	h.mu.Unlock()
	return nil
}
func (h *warnRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnRecorder) WithGroup(string) slog.Handler      { return h }

func (h *warnRecorder) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.msgs
	h.msgs = nil
	return out
}

// volWriter drives a volume through varied commits and remembers its
// pages at every version.
type volWriter struct {
	t      testing.TB
	v      *Volume
	rng    *rand.Rand
	size   int
	random bool // incompressible bodies; else about half compressible, as SQLite pages are
	cur    modelVersion
	hist   map[Version]modelVersion
}

func newVolWriter(t testing.TB, v *Volume, seed uint64, pageSize int) *volWriter {
	empty := modelVersion{pages: map[PageNo][]byte{}, pageSize: pageSize}
	return &volWriter{t: t, v: v, rng: rand.New(rand.NewPCG(seed, 0xc0ffee)), size: pageSize,
		cur: empty, hist: map[Version]modelVersion{0: empty.clone()}}
}

func (w *volWriter) body() []byte {
	b := make([]byte, w.size)
	n := w.size / 2
	if w.random {
		n = w.size
	}
	for i := 0; i < n; i += 8 {
		v := w.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n; i < w.size; i++ {
		b[i] = byte(i / 64)
	}
	return b
}

// commit commits one version: a truncation to truncate if it is not
// negative, then new images of pages. It returns the new head.
func (w *volWriter) commit(truncate int, pages ...PageNo) Version {
	w.t.Helper()
	ver := commitWith(w.t, w.v, func(txn *Txn) error {
		if truncate >= 0 {
			if err := txn.Truncate(uint32(truncate)); err != nil {
				return err
			}
			for p := range w.cur.pages {
				if uint32(p) > uint32(truncate) {
					delete(w.cur.pages, p)
				}
			}
			w.cur.count = uint32(truncate)
		}
		for _, p := range pages {
			img := w.body()
			if err := txn.WritePage(p, img); err != nil {
				return err
			}
			w.cur.pages[p] = img
			w.cur.count = max(w.cur.count, uint32(p))
		}
		return nil
	})
	w.hist[ver] = w.cur.clone()
	return ver
}

// step commits one random change: new images of some pages, growth with
// holes, a truncation, or a truncation and regrowth in one transaction.
func (w *volWriter) step() Version {
	n := int(w.cur.count)
	some := func(lo, hi, k int) []PageNo {
		var ps []PageNo
		for range k {
			ps = append(ps, PageNo(lo+w.rng.IntN(hi-lo+1)))
		}
		return ps
	}
	switch r := w.rng.IntN(20); {
	case n < 4 || r < 3:
		return w.commit(-1, some(n+1, n+20, 1+w.rng.IntN(4))...)
	case r < 5:
		return w.commit(n/2 + w.rng.IntN(n/2))
	case r < 7:
		cut := n/2 + w.rng.IntN(n/2)
		return w.commit(cut, some(n-1, n+8, 2)...)
	default:
		return w.commit(-1, some(1, n, 1+w.rng.IntN(6))...)
	}
}

func mustPush(t testing.TB, v *Volume) PushResult {
	t.Helper()
	res, err := v.Push(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustPull(t testing.TB, v *Volume) PullResult {
	t.Helper()
	res, err := v.Pull(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// checkHead compares the volume's newest version with want.
func checkHead(t testing.TB, v *Volume, want modelVersion) {
	t.Helper()
	s := v.Snapshot()
	defer s.Release()
	checkModel(t, s, want)
}

// TestReplication_Follow: a reader with its own data directory follows a
// writer through one remote, version by version; its snapshots keep their
// version across pulls; a cold reader catches up in one pull.
func TestReplication_Follow(t *testing.T) {
	forStores(t, func(t *testing.T, rem testRemote) {
		ctx := context.Background()
		w := newEngine(t, Options{})
		wv := attach(t, w, "tenant/follow.db", rem.url, rem.store)
		r := newEngine(t, Options{CacheBytes: 256 << 10})
		rv := attach(t, r, "tenant/follow.db", rem.url, rem.open(t))
		if res, err := rv.Pull(ctx); err != nil || res.From != 0 || res.To != 0 || res.Requests != 1 {
			t.Fatalf("pull of an empty remote: %+v %v", res, err)
		}
		wr := newVolWriter(t, wv, 1, 4096)
		wr.commit(-1, 1, 2, 3, 4, 5, 6, 7, 8)
		// Held across every pull below.
		first := rv.Snapshot()
		defer first.Release()
		for round := range 8 {
			for range 1 + round%3 {
				wr.step()
			}
			if round == 4 {
				wr.commit(3)           // a truncation alone
				wr.commit(-1, 12, 2)   // growth with a hole
				wr.commit(5, 9, 1, 20) // truncation and regrowth in one
			}
			push := mustPush(t, wv)
			head, _, _ := wv.Head()
			if push.To != head {
				t.Fatalf("round %d: pushed to %d, head %d", round, push.To, head)
			}
			before := rv.Snapshot()
			res := mustPull(t, rv)
			if res.From != before.Version() || res.To != head || res.Commits != 1 || res.PagesChanged == 0 || res.Requests < 2 {
				t.Fatalf("round %d: pull %+v, want %d..%d", round, res, before.Version(), head)
			}
			checkModel(t, before, wr.hist[before.Version()]) // unmoved by the pull
			checkHead(t, rv, wr.cur)
			before.Release()
			again, err := rv.Pull(ctx)
			if err != nil || again.From != head || again.To != head || again.Requests != 1 {
				t.Fatalf("round %d: second pull %+v %v, want a no-op costing one LIST", round, again, err)
			}
			if st := rv.Replication(); st.Pushed != head || st.RemoteVersion != head || st.Diverged || st.Remote != rem.url {
				t.Fatalf("round %d: reader state %+v", round, st)
			}
		}
		checkModel(t, first, wr.hist[first.Version()])

		// A cold reader: an empty directory, one pull.
		c := newEngine(t, Options{})
		cv := attach(t, c, "tenant/follow.db", rem.url, rem.open(t))
		if f, err := cv.Poll(ctx); err != nil || f.RemoteVersion != wr.v.head.Load().version || f.Version != 0 {
			t.Fatalf("fetch: %+v %v", f, err)
		}
		res := mustPull(t, cv)
		if res.From != 0 || res.Commits != 8 {
			t.Fatalf("cold pull %+v", res)
		}
		checkHead(t, cv, wr.cur)

		// Unpushed commits: no pull.
		wr.step()
		if _, err := wv.Pull(ctx); !errors.Is(err, ErrAhead) {
			t.Fatalf("pull with unpushed commits: %v, want ErrAhead", err)
		}
		// Nor on a reader that wrote locally.
		commitPages(t, rv, 5, 1)
		mustPush(t, wv)
		if _, err := rv.Pull(ctx); !errors.Is(err, ErrAhead) {
			t.Fatalf("reader with a local commit: %v, want ErrAhead", err)
		}
	})
}

// TestReplication_Lazy: a cold replica downloads a page's frame when the
// page is read, once however many readers ask at the same time, and keeps
// it.
func TestReplication_Lazy(t *testing.T) {
	forStores(t, func(t *testing.T, rem testRemote) {
		w := newEngine(t, Options{})
		wv := attach(t, w, "lazy", rem.url, rem.store)
		wr := newVolWriter(t, wv, 2, 4096)
		var all []PageNo
		for p := PageNo(1); p <= 300; p++ {
			all = append(all, p)
		}
		wr.commit(-1, all...)
		mustPush(t, wv)
		frame := func(p PageNo) int64 {
			log := remoteLog(t, rem.store, "lazy")
			for _, ref := range log[len(log)-1].Segments {
				if fr, ok := ref.FrameOf(p); ok && ref.Pages.Contains(uint32(p)) {
					return int64(fr.Length)
				}
			}
			t.Fatalf("page %d is in no frame", p)
			return 0
		}

		t.Run("OnePage", func(t *testing.T) {
			dir := t.TempDir()
			r := openTestEngine(t, dir, Options{CacheBytes: -1})
			defer func() { r.Close() }()
			rv := attach(t, r, "lazy", rem.url, rem.open(t))
			if res := mustPull(t, rv); res.Requests != 2 || res.BytesRead > 8<<10 {
				t.Fatalf("pull %+v: want one LIST and one small GET", res)
			}
			read := func(p PageNo) remote.Stats {
				t.Helper()
				before := rv.RemoteStats()
				s := rv.Snapshot()
				defer s.Release()
				got, err := s.ReadPage(p, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, wr.cur.read(p)) {
					t.Fatalf("page %d differs", p)
				}
				return rv.RemoteStats().Sub(before)
			}
			st := read(123)
			if st.Requests() != 1 || st.Op(remote.OpGetRange).Requests != 1 || st.BytesRead() != frame(123) {
				t.Fatalf("cold read: %v; want one ranged GET of the page's %d-byte frame", st, frame(123))
			}
			if s := rv.Stats(); s.PagesFetched != 1 || s.FramesFetched != 1 {
				t.Fatalf("stats %+v", s)
			}
			if st := read(123); st.Requests() != 0 {
				t.Fatalf("second read: %v", st)
			}
			// Stored on disk, not only in memory: a restart keeps it.
			r.Close()
			r = openTestEngine(t, dir, Options{CacheBytes: -1})
			rv = attach(t, r, "lazy", rem.url, rem.open(t))
			if st := read(123); st.Requests() != 0 {
				t.Fatalf("read after a restart: %v", st)
			}
			if st := read(124); st.Requests() != 1 || st.BytesRead() != frame(124) {
				t.Fatalf("read of the next page: %v", st)
			}
		})

		t.Run("SharedRequest", func(t *testing.T) {
			slow, err := remote.NewLatencyStore(rem.open(t), remote.LatencyOptions{FirstByte: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			r := newEngine(t, Options{CacheBytes: -1})
			rv := attach(t, r, "lazy", rem.url, slow)
			mustPull(t, rv)
			s := rv.Snapshot()
			defer s.Release()
			before := rv.RemoteStats()
			start := make(chan struct{})
			errs := make(chan error, 16)
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					got, err := s.ReadPage(200, nil)
					if err == nil && !bytes.Equal(got, wr.cur.read(200)) {
						err = errors.New("page 200 differs")
					}
					errs <- err
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if st := rv.RemoteStats().Sub(before); st.Op(remote.OpGetRange).Requests != 1 || st.Requests() != 1 {
				t.Fatalf("16 concurrent readers of one cold page: %v, want one request", st)
			}
		})

		// A scan in page order reads ahead: far fewer requests than
		// pages, and no byte it does not need.
		t.Run("Scan", func(t *testing.T) {
			r := newEngine(t, Options{CacheBytes: -1})
			rv := attach(t, r, "lazy", rem.url, rem.open(t))
			mustPull(t, rv)
			before := rv.RemoteStats()
			checkHead(t, rv, wr.cur)
			var all int64
			for p := PageNo(1); p <= 300; p++ {
				all += frame(p)
			}
			if st := rv.RemoteStats().Sub(before); st.Requests() > 12 || st.BytesRead() != all {
				t.Fatalf("scan of 300 cold pages: %v; want at most 12 requests reading the %d bytes of their frames", st, all)
			}
		})

		// With 1 KiB pages a frame holds four: reading one stores all.
		t.Run("SmallPages", func(t *testing.T) {
			sw := newVolWriter(t, attach(t, w, "lazy-1k", rem.url, rem.store), 3, 1024)
			sw.commit(-1, all[:100]...)
			mustPush(t, sw.v)
			r := newEngine(t, Options{CacheBytes: -1})
			rv := attach(t, r, "lazy-1k", rem.url, rem.open(t))
			mustPull(t, rv)
			s := rv.Snapshot()
			defer s.Release()
			before := rv.RemoteStats()
			for p := PageNo(41); p <= 44; p++ {
				if got, err := s.ReadPage(p, nil); err != nil || !bytes.Equal(got, sw.cur.read(p)) {
					t.Fatalf("page %d: %v", p, err)
				}
			}
			if st := rv.RemoteStats().Sub(before); st.Requests() != 1 {
				t.Fatalf("four pages of one frame: %v, want one request", st)
			}
			if st := rv.Stats(); st.PagesFetched != 4 || st.FramesFetched != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	})
}

// TestReplication_Hydrate: Hydrate downloads every page a cold replica
// lacks in a few large ranged reads; reads need the remote no more.
func TestReplication_Hydrate(t *testing.T) {
	forStores(t, func(t *testing.T, rem testRemote) {
		ctx := context.Background()
		w := newEngine(t, Options{})
		wv := attach(t, w, "hydrate", rem.url, rem.store)
		wr := newVolWriter(t, wv, 4, 4096)
		var ps []PageNo
		for p := PageNo(1); p <= 600; p++ {
			ps = append(ps, p)
		}
		wr.commit(-1, ps...)
		mustPush(t, wv)
		// Rewrite every third page and grow: a second segment, and frames
		// of the first that no version reads any more.
		ps = ps[:0]
		for p := PageNo(1); p <= 700; p++ {
			if p%3 == 0 || p > 600 {
				ps = append(ps, p)
			}
		}
		wr.commit(-1, ps...)
		mustPush(t, wv)

		r := newEngine(t, Options{CacheBytes: -1})
		rv := attach(t, r, "hydrate", rem.url, rem.open(t))
		mustPull(t, rv)
		s := rv.Snapshot()
		defer s.Release()
		for _, p := range []PageNo{5, 300, 650} {
			if _, err := s.ReadPage(p, nil); err != nil {
				t.Fatal(err)
			}
		}
		res, err := rv.Hydrate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("hydrate: %+v", res)
		if res.Pages != 700-3 || res.Requests > 4 || res.Requests == 0 {
			t.Fatalf("hydrate %+v: want 697 pages in at most 4 requests (2 segments)", res)
		}
		before := rv.RemoteStats()
		checkModel(t, s, wr.cur)
		if st := rv.RemoteStats().Sub(before); st.Requests() != 0 {
			t.Fatalf("reads after hydrate: %v", st)
		}
		if again, err := rv.Hydrate(ctx); err != nil || again.Pages != 0 || again.Requests != 0 {
			t.Fatalf("second hydrate: %+v %v", again, err)
		}
	})
}

// TestReplication_FastForward: a reader catching up on 1,000 remote
// commits that touched 100 distinct pages reads metadata in proportion to
// the pages, in O(log k) requests, thanks to rollups; without rollups it
// still gets the right data, one commit at a time.
func TestReplication_FastForward(t *testing.T) {
	k, hot := 1000, 100
	if testing.Short() {
		k, hot = 200, 40
	}
	ctx := context.Background()
	rem := newFileRemote(t)
	w := newEngine(t, Options{})
	wv := attach(t, w, "ff", rem.url, rem.store)
	wr := newVolWriter(t, wv, 5, 4096)
	wr.random = true
	var base []PageNo
	for p := PageNo(1); p <= 400; p++ {
		base = append(base, p)
	}
	wr.commit(-1, base...)
	x := mustPush(t, wv).To

	logs := &warnRecorder{}
	newReader := func() *Volume {
		r := newEngine(t, Options{Logger: slog.New(logs)})
		rv := attach(t, r, "ff", rem.url, rem.open(t))
		if res := mustPull(t, rv); res.To != x {
			t.Fatalf("reader at %d", res.To)
		}
		return rv
	}
	r1, r2 := newReader(), newReader()

	hotPages := wr.rng.Perm(400)[:hot]
	touched := roaring.New()
	for range k {
		ps := make([]PageNo, 1+wr.rng.IntN(3))
		for i := range ps {
			ps[i] = PageNo(1 + hotPages[wr.rng.IntN(hot)])
			touched.Add(uint32(ps[i]))
		}
		wr.commit(-1, ps...)
		mustPush(t, wv)
	}
	p := int(touched.GetCardinality())

	// The compressed size of one page, and the full copy baseline.
	var frames, frameBytes, commitBytes, segBytes int64
	var segs, commits int
	for _, m := range remoteLog(t, rem.store, "ff")[1:] {
		for _, ref := range m.Segments {
			for _, fr := range ref.Frames {
				frames++
				frameBytes += int64(fr.Length)
			}
		}
	}
	pageBytes := frameBytes / frames
	objs, err := remote.ListAll(ctx, rem.store, manifest.VolumePrefix("ff"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch {
		case strings.Contains(o.Key, "/s/"):
			segs++
			segBytes += o.Size
		case strings.Contains(o.Key, "/c/"):
			commits++
			commitBytes += o.Size
		}
	}

	res := mustPull(t, r1)
	maxReq := int64(2*bits.Len(uint(k-1)) + 3)
	maxBytes := int64(p)*pageBytes + 64<<10
	if res.Commits != k || res.PagesChanged != p || res.From != x {
		t.Fatalf("pull %+v, want %d commits and %d pages", res, k, p)
	}
	if res.Requests > maxReq || res.BytesRead >= maxBytes {
		t.Fatalf("pull of %d commits touching %d pages: %d requests, %d bytes; want at most %d requests and under %d bytes",
			k, p, res.Requests, res.BytesRead, maxReq, maxBytes)
	}
	// Then read every changed page: one frame each, and fewer requests
	// than pages (catch-up readahead reads runs of the pull's frames).
	before := r1.RemoteStats()
	s := r1.Snapshot()
	for v := range roaring.Values(touched) {
		if _, err := s.ReadPage(PageNo(v), nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Release()
	data := r1.RemoteStats().Sub(before)
	total := res.BytesRead + data.BytesRead()
	if data.Requests() > int64(p) || float64(total) > 1.2*float64(int64(p)*pageBytes)+64<<10 {
		t.Fatalf("reading the %d changed pages: %v", p, data)
	}
	checkHead(t, r1, wr.cur)
	if msgs := logs.take(); len(msgs) > 0 {
		t.Fatalf("warnings: %q", msgs)
	}
	t.Logf("fastforward: k=%d commits touching P=%d distinct pages (compressed page %d B): pull %d requests, %d B metadata "+
		"(limits %d requests, %d B); pull+read of the changed pages %d requests, %d B = %.2fx P*page; "+
		"baseline full copy: %d segments, %d B (%.0fx less with fast-forward); replaying every commit: %d objects, %d B",
		k, p, pageBytes, res.Requests, res.BytesRead, maxReq, maxBytes, res.Requests+data.Requests(), total,
		float64(total)/float64(int64(p)*pageBytes), segs, segBytes, float64(segBytes)/float64(total), commits+segs, commitBytes+segBytes)

	// Without rollups, a pull reads every commit and gets the same data.
	rollups, err := remote.ListAll(ctx, rem.store, manifest.RollupPrefix("ff"))
	if err != nil || len(rollups) == 0 {
		t.Fatalf("%d rollups: %v", len(rollups), err)
	}
	for _, o := range rollups {
		if err := rem.store.Delete(ctx, o.Key); err != nil {
			t.Fatal(err)
		}
	}
	res2 := mustPull(t, r2)
	if res2.To != res.To || res2.Requests < int64(k) {
		t.Fatalf("pull without rollups %+v", res2)
	}
	checkHead(t, r2, wr.cur)
	t.Logf("fastforward: without rollups (%d deleted): pull %d requests, %d B metadata", len(rollups), res2.Requests, res2.BytesRead)
	if msgs := logs.take(); len(msgs) > 0 {
		t.Fatalf("warnings: %q", msgs)
	}
}

// TestReplication_ColdOpen: a replica with nothing local opens a volume
// of many megabytes and reads one page for a handful of requests and well
// under 1% of its bytes.
func TestReplication_ColdOpen(t *testing.T) {
	n := 3000 // 12 MiB of 4 KiB pages
	if testing.Short() {
		n = 1000
	}
	rem := newFileRemote(t)
	w := newEngine(t, Options{})
	wv := attach(t, w, "cold", rem.url, rem.store)
	wr := newVolWriter(t, wv, 6, 4096)
	for part := range 3 {
		var ps []PageNo
		for p := part*n/3 + 1; p <= (part+1)*n/3; p++ {
			ps = append(ps, PageNo(p))
		}
		wr.commit(-1, ps...)
		mustPush(t, wv)
	}
	var ps []PageNo
	for i := 0; i < n/10; i++ {
		ps = append(ps, PageNo(1+wr.rng.IntN(n)))
	}
	wr.commit(-1, ps...)
	mustPush(t, wv)
	volBytes := int64(n) * 4096
	var segBytes int64
	segs, _ := remote.ListAll(context.Background(), rem.store, manifest.SegmentPrefix("cold"))
	for _, o := range segs {
		segBytes += o.Size
	}

	r := newEngine(t, Options{})
	rv := attach(t, r, "cold", rem.url, rem.open(t))
	pull := mustPull(t, rv)
	before := rv.RemoteStats()
	s := rv.Snapshot()
	defer s.Release()
	got, err := s.ReadPage(PageNo(n/2), nil)
	if err != nil || !bytes.Equal(got, wr.cur.read(PageNo(n/2))) {
		t.Fatalf("page %d: %v", n/2, err)
	}
	read := rv.RemoteStats().Sub(before)
	reqs, total := pull.Requests+read.Requests(), pull.BytesRead+read.BytesRead()
	t.Logf("coldopen: volume %d pages, %d B (%d segments, %d B compressed, 4 remote commits); pull %d requests, %d B of maps; "+
		"read of one page %d request, %d B; total %d requests, %d B = %.3f%% of the volume (%.3f%% without the maps)",
		n, volBytes, len(segs), segBytes, pull.Requests, pull.BytesRead, read.Requests(), read.BytesRead(), reqs, total,
		100*float64(total)/float64(volBytes), 100*float64(read.BytesRead())/float64(volBytes))
	if read.Requests() != 1 || read.BytesRead() > 4096+64 {
		t.Fatalf("read of one page: %v", read)
	}
	if reqs > 4 || pull.BytesRead > volBytes/100 || total > volBytes/100+pull.BytesRead {
		t.Fatalf("cold open: %d requests, %d B (maps %d B) of a %d B volume", reqs, total, pull.BytesRead, volBytes)
	}
	if pull.Requests != 2 { // one LIST, one rollup of the 4 commits
		t.Fatalf("pull %+v: want one LIST and one rollup", pull)
	}
}

// TestReplication_Diverged: two writers push from the same base at the
// same time; one wins. The loser keeps its commits, refuses writes and
// pulls, never touches the remote, and after Reset follows the winner and
// can write again.
func TestReplication_Diverged(t *testing.T) {
	forStores(t, func(t *testing.T, rem testRemote) {
		ctx := context.Background()
		a := newEngine(t, Options{})
		b := newEngine(t, Options{})
		va := attach(t, a, "shared", rem.url, rem.store)
		vb := attach(t, b, "shared", rem.url, rem.open(t))
		wa := newVolWriter(t, va, 7, 4096)
		wb := newVolWriter(t, vb, 8, 4096)
		wa.commit(-1, 1, 2, 3, 4)
		base := mustPush(t, va).To
		mustPull(t, vb)
		wb.cur, wb.hist = wa.cur.clone(), map[Version]modelVersion{base: wa.cur.clone()}
		wa.step()
		wa.step()
		for range 3 {
			wb.step()
		}

		start := make(chan struct{})
		var errA, errB error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); <-start; _, errA = va.Push(ctx) }()
		go func() { defer wg.Done(); <-start; _, errB = vb.Push(ctx) }()
		close(start)
		wg.Wait()
		winner, loser, wWin, wLose, errLose := va, vb, wa, wb, errB
		if errA != nil {
			winner, loser, wWin, wLose, errLose = vb, va, wb, wa, errA
			if errB != nil {
				t.Fatalf("both pushes failed: %v; %v", errA, errB)
			}
		}
		if !errors.Is(errLose, ErrDiverged) {
			t.Fatalf("loser's push: %v, want ErrDiverged", errLose)
		}
		t.Logf("winner %s", winner.e.Dir())
		key := manifest.CommitKey("shared", uint64(base))
		won, err := rem.store.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		loserHead, _, _ := loser.Head()
		if st := loser.Replication(); !st.Diverged || st.Pushed != base || st.RemoteVersion != wWin.v.head.Load().version {
			t.Fatalf("loser's state %+v", st)
		}
		s := loser.Snapshot()
		if _, err := loser.Begin(s); !errors.Is(err, ErrDiverged) {
			t.Fatalf("begin on the loser: %v, want ErrDiverged", err)
		}
		if _, err := loser.Pull(ctx); !errors.Is(err, ErrDiverged) {
			t.Fatalf("pull on the loser: %v, want ErrDiverged", err)
		}
		if _, err := loser.Push(ctx); !errors.Is(err, ErrDiverged) {
			t.Fatalf("second push of the loser: %v, want ErrDiverged", err)
		}
		checkModel(t, s, wLose.cur) // its own commits, kept
		if s.Version() != loserHead {
			t.Fatalf("loser's head moved to %d", s.Version())
		}
		// Reset must wait for readers of what it discards.
		if _, err := loser.Reset(ctx); !errors.Is(err, ErrBusy) {
			t.Fatalf("reset with a snapshot of a discarded version: %v, want ErrBusy", err)
		}
		s.Release()
		if again, _ := rem.store.Get(ctx, key); !bytes.Equal(again, won) {
			t.Fatal("the winner's commit changed")
		}
		if log := remoteLog(t, rem.store, "shared"); len(log) != 2 || Version(log[1].Version) != winner.head.Load().version {
			t.Fatalf("remote log of %d commits", len(log))
		}

		lineage := loser.Lineage()
		res, err := loser.Reset(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Discarded != loserHead-base || res.To != winner.head.Load().version || loser.Lineage() == lineage {
			t.Fatalf("reset %+v", res)
		}
		checkHead(t, loser, wWin.cur)
		if st := loser.Replication(); st.Diverged || st.Pushed != res.To {
			t.Fatalf("state after reset %+v", st)
		}
		// The former loser writes and pushes; the winner follows.
		wLose.cur, wLose.hist = wWin.cur.clone(), map[Version]modelVersion{}
		wLose.step()
		wLose.step()
		mustPush(t, loser)
		mustPull(t, winner)
		checkHead(t, winner, wLose.cur)
		if log := remoteLog(t, rem.store, "shared"); len(log) != 3 {
			t.Fatalf("remote log of %d commits, want 3", len(log))
		}
		checkHead(t, winner, replayRemote(t, rem.store, "shared")[winner.head.Load().version])
	})
}

// TestReplication_Faults: with a fifth of the requests failing (before or
// after they take effect) or delayed, every push, pull and read either
// succeeds or says it failed; retries get through; the remote log stays
// one chain, and the reader ends with the writer's data. Reads that come
// back corrupt or short are errors, never wrong bytes.
func TestReplication_Faults(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 15
	}
	actions := []remote.Action{{Fault: remote.FailBefore}, {Fault: remote.FailAfter}, {Fault: remote.Delay, Delay: 2 * time.Millisecond}}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("Fail/seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rem := newFileRemote(t)
			wf := remote.NewFaultStore(rem.store, remote.Random(seed, 0.2, actions))
			rf := remote.NewFaultStore(rem.open(t), remote.Random(seed+100, 0.2, actions))
			quiet := slog.New(&warnRecorder{}) // rollups that fail are logged
			wv := attach(t, newEngine(t, Options{Logger: quiet}), "f", rem.url, wf)
			rv := attach(t, newEngine(t, Options{CacheBytes: -1, Logger: quiet}), "f", rem.url, rf)
			wr := newVolWriter(t, wv, seed, 4096)
			wr.commit(-1, 1, 2, 3, 4, 5, 6)
			var failed, ok int
			note := func(err error) {
				if err == nil {
					ok++
					return
				}
				failed++
				if !errors.Is(err, remote.ErrInjected) || errors.Is(err, ErrDiverged) || errors.Is(err, ErrRemoteCorrupt) || errors.Is(err, ErrAhead) {
					t.Fatalf("unexpected error: %v", err)
				}
			}
			for range rounds {
				wr.step()
				_, err := wv.Push(context.Background())
				note(err)
				_, err = rv.Pull(context.Background())
				note(err)
				readSome(t, rv, wr, 8, note)
			}
			until(t, func() error { _, err := wv.Push(context.Background()); return err })
			until(t, func() error { _, err := rv.Pull(context.Background()); return err })
			readAllRetrying(t, rv, wr.cur)
			head, _, _ := wv.Head()
			if st := wv.Replication(); st.Pushed != head || st.Diverged {
				t.Fatalf("writer state %+v, head %d", st, head)
			}
			for ver, m := range replayRemote(t, rem.store, "f") {
				if err := equalModels(m, wr.hist[ver]); err != nil {
					t.Fatalf("remote version %d: %v", ver, err)
				}
			}
			t.Logf("%d calls succeeded, %d failed; injected %v and %v", ok, failed, wf.Injected(), rf.Injected())
			if failed == 0 {
				t.Fatal("no fault reached the engine")
			}
		})
	}
	for _, seed := range []uint64{4, 5} {
		t.Run(fmt.Sprintf("BadBytes/seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rem := newFileRemote(t)
			bad := []remote.Action{{Fault: remote.Corrupt}, {Fault: remote.Truncate}}
			rf := remote.NewFaultStore(rem.open(t), remote.Random(seed, 0.25, bad, remote.OpGet, remote.OpGetRange))
			wv := attach(t, newEngine(t, Options{}), "b", rem.url, rem.store)
			rv := attach(t, newEngine(t, Options{CacheBytes: -1, Logger: slog.New(&warnRecorder{})}), "b", rem.url, rf)
			wr := newVolWriter(t, wv, seed, 4096)
			wr.commit(-1, 1, 2, 3, 4, 5, 6)
			var failed int
			note := func(err error) {
				if err != nil {
					failed++
					if !errors.Is(err, ErrRemoteCorrupt) {
						t.Fatalf("a corrupt or short read gave %v, want ErrRemoteCorrupt", err)
					}
				}
			}
			for i := range rounds {
				wr.step()
				mustPush(t, wv)
				_, err := rv.Pull(context.Background())
				note(err)
				readSome(t, rv, wr, 8, note)
				if i%5 == 4 {
					_, err := rv.Hydrate(context.Background())
					note(err)
				}
			}
			until(t, func() error { _, err := rv.Pull(context.Background()); return err })
			readAllRetrying(t, rv, wr.cur)
			t.Logf("%d calls failed; injected %v", failed, rf.Injected())
			if failed == 0 {
				t.Fatal("no fault reached the engine")
			}
		})
	}
}

// readSome reads n random pages of the reader's newest version; each read
// must give the writer's bytes at that version or an error, which goes to
// note.
func readSome(t *testing.T, rv *Volume, wr *volWriter, n int, note func(error)) {
	t.Helper()
	s := rv.Snapshot()
	defer s.Release()
	want, ok := wr.hist[s.Version()]
	if !ok {
		t.Fatalf("reader at version %d, which the writer never had", s.Version())
	}
	if s.PageCount() != want.count {
		t.Fatalf("version %d: %d pages, want %d", s.Version(), s.PageCount(), want.count)
	}
	for range min(n, int(want.count)) {
		p := PageNo(1 + wr.rng.IntN(int(want.count)))
		got, err := s.ReadPage(p, nil)
		note(err)
		if err == nil && !bytes.Equal(got, want.read(p)) {
			t.Fatalf("version %d page %d: wrong bytes", s.Version(), p)
		}
	}
}

// until retries fn until it succeeds, failing the test after 100 tries.
func until(t *testing.T, fn func() error) {
	t.Helper()
	var err error
	for range 100 {
		if err = fn(); err == nil {
			return
		}
	}
	t.Fatalf("100 tries failed, the last with %v", err)
}

// readAllRetrying compares every page of the newest version with want,
// retrying reads that fail.
func readAllRetrying(t *testing.T, v *Volume, want modelVersion) {
	t.Helper()
	s := v.Snapshot()
	defer s.Release()
	if s.PageCount() != want.count {
		t.Fatalf("version %d: %d pages, want %d", s.Version(), s.PageCount(), want.count)
	}
	for p := PageNo(1); uint32(p) <= want.count; p++ {
		var got []byte
		until(t, func() (err error) { got, err = s.ReadPage(p, nil); return err })
		if !bytes.Equal(got, want.read(p)) {
			t.Fatalf("page %d differs", p)
		}
	}
}

// claimHook blocks a push at the claim of its n-th remote commit (before
// or after the claim reaches the store) and tells the parent process so
// on stdout: the parent then kills this process.
type claimHook struct {
	remote.Store
	after bool
	n     int
	seen  int
}

const killMarker = "CAMBIUM-CLAIM-BLOCKED"

func (h *claimHook) Create(ctx context.Context, key string, data []byte) error {
	if strings.Contains(key, "/c/") {
		if h.seen++; h.seen == h.n {
			if h.after {
				if err := h.Store.Create(ctx, key, data); err != nil {
					return err
				}
			}
			fmt.Println(killMarker)
			os.Stdout.Sync()
			select {}
		}
	}
	return h.Store.Create(ctx, key, data)
}

// killPages is what the child of TestReplication_KillDuringPush writes:
// version 1 (pushed) and versions 2 and 3 (the push it is killed in).
func killPages(ver Version) []PageNo {
	return [][]PageNo{nil, {1, 2, 3}, {2, 4}, {1, 5}}[ver]
}

func killImage(p PageNo, ver Version) []byte {
	return bytes.Repeat([]byte{byte(p)*16 + byte(ver)}, 4096)
}

// TestReplication_KillDuringPush: a writer killed with SIGKILL after its
// segment is uploaded and before its claim, or after the claim and before
// it recorded it, pushes the same commit on restart: no divergence, no
// duplicate, no gap.
func TestReplication_KillDuringPush(t *testing.T) {
	if os.Getenv("CAMBIUM_PUSHKILL_CHILD") != "" {
		return
	}
	for _, mode := range []string{"before", "after"} {
		t.Run(mode+"Claim", func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := t.TempDir()
			rem := newFileRemote(t)
			root := strings.TrimPrefix(rem.url, "file://")
			cmd := exec.Command(os.Args[0], "-test.run=^TestReplication_KillChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "CAMBIUM_PUSHKILL_CHILD="+strings.Join([]string{mode, dir, root}, "|"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			blocked := make(chan bool, 1)
			var said strings.Builder
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					said.WriteString(sc.Text() + "\n")
					if sc.Text() == killMarker {
						blocked <- true
						return
					}
				}
				blocked <- false
			}()
			select {
			case ok := <-blocked:
				if !ok {
					cmd.Wait()
					t.Fatalf("child ended without blocking:\n%s%s", said.String(), stderr.String())
				}
			case <-time.After(2 * time.Minute):
				cmd.Process.Kill()
				t.Fatal("child never reached the claim")
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()

			claimed, _ := remote.ListAll(ctx, rem.store, manifest.CommitPrefix("k"))
			if want := map[string]int{"before": 1, "after": 2}[mode]; len(claimed) != want {
				t.Fatalf("%d commits in the remote after the kill, want %d", len(claimed), want)
			}
			e := openTestEngine(t, dir, Options{})
			defer e.Close()
			v := attach(t, e, "k", rem.url, rem.store)
			if st := v.Replication(); st.Pushed != 1 || st.Diverged {
				t.Fatalf("state after the kill: %+v", st)
			}
			res, err := v.Push(ctx)
			if err != nil || res.To != 3 {
				t.Fatalf("push after the kill: %+v %v", res, err)
			}
			segs, _ := remote.ListAll(ctx, rem.store, manifest.SegmentPrefix("k"))
			if len(segs) != 2 {
				t.Fatalf("%d segments, want 2: the restarted push must claim what was uploaded", len(segs))
			}
			log := remoteLog(t, rem.store, "k")
			if len(log) != 2 || log[0].Version != 1 || log[1].Version != 3 || !log[1].Changeset.Equals(roaring.BitmapOf(1, 2, 4, 5)) {
				t.Fatalf("remote log %+v", log)
			}
			if _, err := rem.store.Get(ctx, manifest.RollupKey("k", 1, 0)); err != nil {
				t.Fatalf("rollup of commits 1..2: %v", err)
			}
			want := modelVersion{pages: map[PageNo][]byte{}, count: 5, pageSize: 4096}
			for ver := Version(1); ver <= 3; ver++ {
				for _, p := range killPages(ver) {
					want.pages[p] = killImage(p, ver)
				}
			}
			checkHead(t, v, want)
			r := newEngine(t, Options{})
			rv := attach(t, r, "k", rem.url, rem.open(t))
			mustPull(t, rv)
			checkHead(t, rv, want)
		})
	}
}

// TestReplication_KillChild runs in a child process of
// TestReplication_KillDuringPush.
func TestReplication_KillChild(t *testing.T) {
	spec := os.Getenv("CAMBIUM_PUSHKILL_CHILD")
	if spec == "" {
		return
	}
	parts := strings.Split(spec, "|")
	mode, dir, root := parts[0], parts[1], parts[2]
	fs, err := remote.NewFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	e := openTestEngine(t, dir, Options{})
	v := attach(t, e, "k", "file://"+root, &claimHook{Store: fs, after: mode == "after", n: 2})
	for ver := Version(1); ver <= 3; ver++ {
		base := v.Snapshot()
		txn, err := v.Begin(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range killPages(ver) {
			txn.WritePage(p, killImage(p, ver))
		}
		s, err := txn.Commit(Durable)
		if err != nil {
			t.Fatal(err)
		}
		s.Release()
		base.Release()
		if ver == 1 {
			mustPush(t, v)
		}
	}
	v.Push(context.Background()) // blocks in the claim
	t.Fatal("the push was not blocked")
}

// TestReplication_CorruptSegment: a page whose frame is corrupt in the
// remote is an error naming the segment, never wrong bytes; other pages
// still read.
func TestReplication_CorruptSegment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rem := newFileRemote(t)
	wv := attach(t, newEngine(t, Options{}), "bad", rem.url, rem.store)
	wr := newVolWriter(t, wv, 9, 4096)
	wr.commit(-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	mustPush(t, wv)
	wr.commit(-1, 1)
	mustPush(t, wv)
	ref := remoteLog(t, rem.store, "bad")[0].Segments[0]
	fr, _ := ref.FrameOf(7)
	key := manifest.SegmentKey("bad", ref.ID)
	raw, err := rem.store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	raw[fr.Offset+int64(fr.Length)/2] ^= 0x20
	if err := rem.store.Put(ctx, key, raw); err != nil {
		t.Fatal(err)
	}

	rv := attach(t, newEngine(t, Options{CacheBytes: -1}), "bad", rem.url, rem.open(t))
	mustPull(t, rv)
	s := rv.Snapshot()
	defer s.Release()
	for range 2 { // the error is not remembered as data
		got, err := s.ReadPage(7, nil)
		if !errors.Is(err, ErrRemoteCorrupt) || !strings.Contains(err.Error(), key) || got != nil {
			t.Fatalf("read of the corrupt page: %d bytes, %v; want ErrRemoteCorrupt naming %s", len(got), err, key)
		}
	}
	for _, p := range []PageNo{6, 8} {
		if got, err := s.ReadPage(p, nil); err != nil || !bytes.Equal(got, wr.cur.read(p)) {
			t.Fatalf("page %d next to the corrupt one: %v", p, err)
		}
	}
	if _, err := rv.Hydrate(ctx); !errors.Is(err, ErrRemoteCorrupt) || !strings.Contains(err.Error(), key) {
		t.Fatalf("hydrate: %v", err)
	}
	past, err := rv.SnapshotAt(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer past.Release()
	if _, err := past.ReadPage(7, nil); err != nil && (!errors.Is(err, ErrRemoteCorrupt) || !strings.Contains(err.Error(), key)) {
		t.Fatalf("read through SnapshotAt: %v", err)
	} else if err == nil {
		t.Fatal("read through SnapshotAt of a corrupt frame succeeded")
	}
}

// TestReplication_TimeTravel: SnapshotAt(N) gives exactly version N's
// pages, from local data on the writer and from the remote on a replica;
// versions that a push rolled into a later one are not in the remote.
func TestReplication_TimeTravel(t *testing.T) {
	forStores(t, func(t *testing.T, rem testRemote) {
		ctx := context.Background()
		wv := attach(t, newEngine(t, Options{}), "tt", rem.url, rem.store)
		wr := newVolWriter(t, wv, 10, 4096)
		wr.commit(-1, 1, 2, 3, 4, 5, 6, 7, 8)
		var pushed []Version
		var rolled []Version // versions inside a push of several commits
		for i := range 9 {
			wr.step()
			if i%3 == 1 {
				rolled = append(rolled, wr.step())
				wr.step()
			}
			pushed = append(pushed, mustPush(t, wv).To)
		}
		// The writer reads every version it made from its own store.
		for ver, want := range wr.hist {
			if ver == 0 {
				continue
			}
			before := wv.RemoteStats()
			s, err := wv.SnapshotAt(ctx, ver)
			if err != nil {
				t.Fatalf("writer at %d: %v", ver, err)
			}
			checkModel(t, s, want)
			s.Release()
			if st := wv.RemoteStats().Sub(before); st.Requests() != 0 {
				t.Fatalf("writer at %d read the remote: %v", ver, st)
			}
		}
		for _, pull := range []bool{false, true} {
			rv := attach(t, newEngine(t, Options{}), "tt", rem.url, rem.open(t))
			if pull {
				mustPull(t, rv)
			}
			for _, ver := range pushed {
				before := rv.RemoteStats()
				s, err := rv.SnapshotAt(ctx, ver)
				if err != nil {
					t.Fatalf("replica (pulled %v) at %d: %v", pull, ver, err)
				}
				checkModel(t, s, wr.hist[ver])
				s.Release()
				if st := rv.RemoteStats().Sub(before); ver != pushed[len(pushed)-1] || !pull {
					if st.Requests() == 0 || st.Op(remote.OpGet).Requests > int64(2*bits.Len(uint(len(pushed)))+2) {
						t.Fatalf("replica at %d: %v", ver, st)
					}
				}
			}
			for _, ver := range rolled {
				if _, err := rv.SnapshotAt(ctx, ver); !errors.Is(err, ErrVersion) {
					t.Fatalf("replica (pulled %v) at %d, inside a push: %v, want ErrVersion", pull, ver, err)
				}
			}
			if _, err := rv.SnapshotAt(ctx, pushed[len(pushed)-1]+1); !errors.Is(err, ErrVersion) {
				t.Fatalf("replica at a future version: %v", err)
			}
		}
		if _, err := wv.SnapshotAt(ctx, pushed[len(pushed)-1]+1); !errors.Is(err, ErrVersion) {
			t.Fatalf("writer at a future version: %v", err)
		}
	})
}

// TestReplication_SmallPagesRollups: with pages smaller than a frame, a
// truncation inside a frame leaves rollups that readers can use (a frame
// may reach past the page count).
func TestReplication_SmallPagesRollups(t *testing.T) {
	t.Parallel()
	rem := newFileRemote(t)
	wv := attach(t, newEngine(t, Options{}), "small", rem.url, rem.store)
	wr := newVolWriter(t, wv, 11, 512)
	var ps []PageNo
	for p := PageNo(1); p <= 40; p++ {
		ps = append(ps, p)
	}
	wr.commit(-1, ps...)
	mustPush(t, wv)
	wr.commit(13) // inside the frame of pages 9..16
	mustPush(t, wv)
	wr.commit(-1, 2, 12)
	mustPush(t, wv)
	wr.commit(-1, 3)
	mustPush(t, wv)
	logs := &warnRecorder{}
	rv := attach(t, newEngine(t, Options{Logger: slog.New(logs)}), "small", rem.url, rem.open(t))
	res := mustPull(t, rv)
	checkHead(t, rv, wr.cur)
	if msgs := logs.take(); len(msgs) > 0 || res.Requests != 2 {
		t.Fatalf("pull %+v: want one LIST and one rollup; warnings %q", res, msgs)
	}
	for _, ver := range slices.Sorted(func(yield func(Version) bool) {
		for v := range wr.hist {
			if !yield(v) {
				return
			}
		}
	}) {
		if ver == 0 {
			continue
		}
		s, err := rv.SnapshotAt(context.Background(), ver)
		if err != nil {
			t.Fatal(err)
		}
		checkModel(t, s, wr.hist[ver])
		s.Release()
	}
	if msgs := logs.take(); len(msgs) > 0 {
		t.Fatalf("warnings: %q", msgs)
	}
}

// equalModels reports how two volume states differ, or nil.
func equalModels(got, want modelVersion) error {
	if got.count != want.count {
		return fmt.Errorf("%d pages, want %d", got.count, want.count)
	}
	for p := PageNo(1); uint32(p) <= want.count; p++ {
		if !bytes.Equal(got.read(p), want.read(p)) {
			return fmt.Errorf("page %d differs", p)
		}
	}
	return nil
}

// TestReplication_PruneReplica: a replica prunes the versions it pulled,
// though one pulled commit covers more versions than a prune step takes.
func TestReplication_PruneReplica(t *testing.T) {
	t.Parallel()
	rem := newFileRemote(t)
	wv := attach(t, newEngine(t, Options{}), "prune", rem.url, rem.store)
	wr := newVolWriter(t, wv, 12, 512)
	wr.commit(-1, 1, 2, 3, 4, 5, 6, 7, 8)
	mustPush(t, wv)
	logs := &warnRecorder{}
	rv := attach(t, newEngine(t, Options{Logger: slog.New(logs)}), "prune", rem.url, rem.open(t))
	mustPull(t, rv)
	for range pruneBatchCommits + 50 {
		wr.step()
	}
	mustPush(t, wv)
	mustPull(t, rv)
	head, _, _ := rv.Head()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rv.mu.Lock()
		done := rv.mu.prunedThrough
		rv.mu.Unlock()
		if done == head {
			break
		}
		if msgs := logs.take(); len(msgs) > 0 || time.Now().After(deadline) {
			t.Fatalf("pruned through %d of %d; warnings %q", done, head, msgs)
		}
		rv.e.kickPruner()
		time.Sleep(10 * time.Millisecond)
	}
	checkHead(t, rv, wr.cur)
	if msgs := logs.take(); len(msgs) > 0 {
		t.Fatalf("warnings: %q", msgs)
	}
}

// TestVolume_SnapshotAtWhilePruning: a local snapshot of a past version,
// taken while the pruner works on the versions around it, reads that
// version's bytes: the pruner never deletes an image such a snapshot
// reads, and SnapshotAt never pins a version a prune step in progress
// has passed.
func TestVolume_SnapshotAtWhilePruning(t *testing.T) {
	t.Parallel()
	const pages = 32
	run := 1500 * time.Millisecond
	if testing.Short() {
		run = time.Second
	}
	v, _ := newEngine(t, Options{CacheBytes: -1}).Volume("prune-race")
	img := func(ver Version, p PageNo) []byte { // every commit writes every page
		b := make([]byte, 512)
		binary.BigEndian.PutUint64(b, uint64(ver))
		b[8] = byte(p)
		return b
	}
	var done atomic.Bool
	var bad, tries atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				k := tries.Add(1)
				time.Sleep(time.Duration(k%10) * time.Millisecond)
				v.mu.Lock()
				pruned := v.mu.prunedThrough
				v.mu.Unlock()
				head, _, _ := v.Head()
				if head <= pruned {
					continue
				}
				n := pruned + Version(uint64(k*7919)%uint64(head-pruned+1))
				s, err := v.SnapshotAt(context.Background(), n)
				if err != nil {
					continue // passed by the pruner meanwhile: not local any more
				}
				// Hold it across a prune step.
				for end := time.Now().Add(5 * time.Millisecond); time.Now().Before(end); {
					p := PageNo(1 + uint64(tries.Load())%pages)
					if got, err := s.ReadPage(p, nil); err != nil || !bytes.Equal(got, img(n, p)) {
						bad.Add(1)
					}
				}
				s.Release()
			}
		}()
	}
	prunedThrough := func() Version {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.mu.prunedThrough
	}
	// At least run, and two prune steps (slow under the race detector).
	for start := time.Now(); (time.Since(start) < run || prunedThrough() < 2*pruneMinCommits) && time.Since(start) < 20*time.Second && bad.Load() == 0; {
		commitWith(t, v, func(txn *Txn) error {
			for p := PageNo(1); p <= pages; p++ {
				if err := txn.WritePage(p, img(txn.Base()+1, p)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	done.Store(true)
	wg.Wait()
	pruned := prunedThrough()
	head, _, _ := v.Head()
	t.Logf("%d snapshots, %d bad reads; pruned through %d of %d", tries.Load(), bad.Load(), pruned, head)
	if bad.Load() > 0 {
		t.Fatalf("%d reads of past versions gave wrong bytes or failed", bad.Load())
	}
	if pruned == 0 {
		t.Fatal("the pruner never ran: the test proves nothing")
	}
}

// inFlight is a store that records the most ranged reads it served at
// once.
type inFlight struct {
	remote.Store
	mu       sync.Mutex
	now, max int
}

func (s *inFlight) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	s.mu.Lock()
	s.now++
	s.max = max(s.max, s.now)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.now--
		s.mu.Unlock()
	}()
	return s.Store.GetRange(ctx, key, off, n)
}

// TestReplication_ScanPrefetch: a scan of a cold replica fetches ahead of
// the reader, several windows at a time, each frame once; when the fetches
// ahead fail, the reader fetches for itself and still reads every page
// right.
func TestReplication_ScanPrefetch(t *testing.T) {
	const pages = 4000
	rem := newFileRemote(t)
	wv := attach(t, newEngine(t, Options{}), "scan", rem.url, rem.store)
	wr := newVolWriter(t, wv, 7, 4096)
	all := make([]PageNo, pages)
	for i := range all {
		all[i] = PageNo(i + 1)
	}
	wr.commit(-1, all...)
	mustPush(t, wv)
	var frames int64
	for _, ref := range remoteLog(t, rem.store, "scan")[0].Segments {
		for _, fr := range ref.Frames {
			frames += int64(fr.Length)
		}
	}

	t.Run("Concurrent", func(t *testing.T) {
		slow, err := remote.NewLatencyStore(rem.open(t), remote.LatencyOptions{FirstByte: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		counted := &inFlight{Store: slow}
		rv := attach(t, newEngine(t, Options{CacheBytes: -1}), "scan", rem.url, counted)
		mustPull(t, rv)
		before := rv.RemoteStats()
		checkHead(t, rv, wr.cur)
		st := rv.RemoteStats().Sub(before)
		// 4,000 one-page frames: a ramp of windows of 1, 4, 16 and 64
		// frames, then windows of 256; one request per frame would be
		// 4,000.
		if st.Requests() > 40 || st.BytesRead() != frames {
			t.Fatalf("scan of %d cold pages: %v; want at most 40 requests reading the %d bytes of their frames once", pages, st, frames)
		}
		if counted.max < 2 {
			t.Fatalf("at most %d ranged read at a time: the scan did not fetch ahead concurrently", counted.max)
		}
		t.Logf("scan of %d cold pages: %v, up to %d ranged reads at once", pages, st, counted.max)
	})

	t.Run("Faults", func(t *testing.T) {
		bad := []remote.Action{{Fault: remote.FailBefore}, {Fault: remote.FailAfter}, {Fault: remote.Truncate}}
		rf := remote.NewFaultStore(rem.open(t), remote.Random(9, 0.3, bad, remote.OpGetRange))
		quiet := slog.New(&warnRecorder{})
		rv := attach(t, newEngine(t, Options{CacheBytes: -1, Logger: quiet}), "scan", rem.url, rf)
		until(t, func() error { _, err := rv.Pull(context.Background()); return err })
		readAllRetrying(t, rv, wr.cur)
	})
}
