package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/remote"
)

// settle waits until the evictor of e has run a whole pass begun after
// the call, and returns the budget's state then.
func settle(t testing.TB, e *Engine) BudgetStats {
	t.Helper()
	b := e.budget
	deadline := time.Now().Add(20 * time.Second)
	for !b.counted.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the data directory's images were never counted")
		}
		time.Sleep(time.Millisecond)
	}
	p0 := b.passes.Load()
	for b.passes.Load() < p0+2 {
		if time.Now().After(deadline) {
			t.Fatal("the evictor did not run")
		}
		b.poke()
		time.Sleep(time.Millisecond)
	}
	return e.Budget()
}

// checkCount compares the budget's count of e's images with a count of
// what the store holds.
func checkCount(t testing.TB, e *Engine) {
	t.Helper()
	// A background fetch (readahead) or eviction batch may be between
	// its write and its count: they agree once it is done.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err := e.settle(); err != nil {
			t.Fatal(err)
		}
		snap := e.db.NewSnapshot()
		want, err := countStore(context.Background(), snap)
		snap.Close()
		if err != nil {
			t.Fatal(err)
		}
		b := e.budget
		got := storeCount{b.images.Load(), b.stubs.Load(), b.locs.Load()}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the budget counts %d bytes of images, %d stubs and %d location records; the store holds %d, %d and %d",
				got.images, got.stubs, got.locs, want.images, want.stubs, want.locs)
		}
	}
}

// TestBudget_Model mixes commits, pushes, pulls, reads, pinned snapshots,
// collections of the remote and evictions under budgets of a few pages,
// on a writer and a replica, and checks every read against the writer's
// pages and the budget's count against the store.
func TestBudget_Model(t *testing.T) {
	seed := modelSeed()
	steps := 400
	if testing.Short() {
		steps = 120
	}
	t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, 0xb0d6e7))
		rem := newFileRemote(t)
		const page = 4096
		quiet := slog.New(&warnRecorder{}) // pushes after a collection warn about rollups
		we := newEngine(t, Options{CacheBudget: 6 * page, CacheBytes: -1, Logger: quiet})
		re := newEngine(t, Options{CacheBudget: 4 * page, CacheBytes: -1, Logger: quiet})
		wv := attach(t, we, "doc", rem.url, rem.store)
		rv := attach(t, re, "doc", rem.url, rem.open(t))
		w := newVolWriter(t, wv, seed, page)
		w.commit(-1, allPages(16)...)
		mustPush(t, wv)

		var oldest Version // the oldest version the remote keeps since a collection
		type pin struct {
			s    *Snapshot
			what string
		}
		var pins []pin
		defer func() {
			for _, p := range pins {
				p.s.Release()
			}
		}()
		check := func(what string, s *Snapshot, pages []PageNo) {
			t.Helper()
			err := readVersion(s, w.hist[s.Version()], pages)
			if errors.Is(err, ErrCollected) && s.Version() < oldest {
				return // collected: a clear error, never other bytes
			}
			if err != nil {
				t.Fatalf("%s at version %d: %v", what, s.Version(), err)
			}
		}
		some := func(n uint32) []PageNo {
			var ps []PageNo
			for range 1 + rng.IntN(6) {
				if n > 0 {
					ps = append(ps, PageNo(1+rng.IntN(int(n))))
				}
			}
			return ps
		}
		var gcs int
		for i := range steps {
			switch r := rng.IntN(100); {
			case r < 25:
				w.step()
			case r < 40:
				mustPush(t, wv)
			case r < 50:
				if _, err := rv.Pull(ctx); err != nil && !errors.Is(err, ErrCollected) {
					t.Fatalf("step %d: pull: %v", i, err)
				}
			case r < 70:
				s := rv.Snapshot()
				check("replica", s, some(s.PageCount()))
				s.Release()
			case r < 78:
				s := wv.Snapshot()
				check("writer", s, some(s.PageCount()))
				s.Release()
			case r < 83:
				if len(pins) < 3 {
					if rng.IntN(2) == 0 {
						pins = append(pins, pin{rv.Snapshot(), "pinned replica"})
					} else {
						pins = append(pins, pin{wv.Snapshot(), "pinned writer"})
					}
				}
			case r < 88:
				if len(pins) > 0 {
					j := rng.IntN(len(pins))
					p := pins[j]
					check(p.what, p.s, allPages(p.s.PageCount()))
					p.s.Release()
					pins = append(pins[:j], pins[j+1:]...)
				}
			case r < 92:
				mustPush(t, wv)
				res, err := wv.GC(ctx, GCOptions{Retain: 0, MinAge: -1})
				if err != nil {
					t.Fatalf("step %d: gc: %v", i, err)
				}
				oldest = max(oldest, res.OldestVersion)
				gcs++
			default:
				for _, e := range []*Engine{we, re} {
					st := settle(t, e)
					if st.CachedBytes > st.Budget && st.OverBudget == 0 {
						t.Fatalf("step %d: %d bytes cached over a budget of %d, none reported over", i, st.CachedBytes, st.Budget)
					}
				}
				s := rv.Snapshot()
				check("replica after eviction", s, allPages(s.PageCount()))
				s.Release()
				s = wv.Snapshot()
				check("writer after eviction", s, allPages(s.PageCount()))
				s.Release()
			}
		}
		for _, p := range pins {
			check(p.what, p.s, allPages(p.s.PageCount()))
		}
		mustPush(t, wv)
		for _, e := range []*Engine{we, re} {
			settle(t, e)
			we.pruneAll()
			re.pruneAll()
			settle(t, e)
			checkCount(t, e)
		}
		ws, rs := we.Budget(), re.Budget()
		t.Logf("writer: %+v; replica: %+v; %d collections; reads: writer %+v, replica %+v", ws, rs, gcs, wv.Stats(), rv.Stats())
		if ws.Evictions == 0 || rs.Evictions == 0 {
			t.Fatalf("no evictions: writer %+v, replica %+v", ws, rs)
		}
	})
}

// TestBudget_Unpushed: images not pushed yet are never evicted, however
// far over the budget they take the directory; the overage is reported,
// and once they are pushed they are evicted and read back right.
func TestBudget_Unpushed(t *testing.T) {
	rem := newFileRemote(t)
	const page = 4096
	e := newEngine(t, Options{CacheBudget: 4 * page, CacheBytes: -1})
	v := attach(t, e, "doc", rem.url, rem.store)
	w := newVolWriter(t, v, 3, page)
	w.commit(-1, allPages(20)...)
	st := settle(t, e)
	if st.CachedBytes != 20*page || st.Evictions != 0 || st.OverBudget != 16*page {
		t.Fatalf("20 unpushed pages under a budget of 4: %+v", st)
	}
	checkHead(t, v, w.cur)

	mustPush(t, v)
	// Unpushed again: 6 new images that stay, and the 6 pushed ones they
	// supersede, which Reset would return to: every other page is
	// evicted.
	w.commit(-1, 1, 2, 3, 4, 5, 6)
	st = settle(t, e)
	if st.CachedBytes != 12*page || st.Evictions != 14 || st.OverBudget != 8*page+st.MetadataBytes || st.MetadataBytes != 14*stubDiskBytes+6*locationDiskBytes {
		t.Fatalf("after a push: %+v", st)
	}
	// The newest images of pages 1..6 are not pushed: they stay.
	for p := PageNo(1); p <= 6; p++ {
		u, val, found, err := v.lookupPage(VolumeID(v.id.Load()), p, v.head.Load().version)
		if err != nil || !found || imageBytes(val) == 0 {
			t.Fatalf("unpushed page %d (version %d): found %v, %d bytes, %v", p, u, found, len(val), err)
		}
	}
	checkHead(t, v, w.cur)
	checkCount(t, e)
}

// TestBudget_RemoteFails: a page evicted from a replica and read again
// while the remote fails is a clear I/O error, not other bytes, and reads
// right once the remote is back.
func TestBudget_RemoteFails(t *testing.T) {
	rem := newFileRemote(t)
	const page = 4096
	wv := attach(t, newEngine(t, Options{}), "doc", rem.url, rem.store)
	w := newVolWriter(t, wv, 5, page)
	w.commit(-1, allPages(32)...)
	mustPush(t, wv)

	faults := remote.NewFaultStore(rem.open(t), nil)
	re := newEngine(t, Options{CacheBudget: 8 * page, CacheBytes: -1})
	rv := attach(t, re, "doc", rem.url, faults)
	mustPull(t, rv)
	checkHead(t, rv, w.cur) // fetches every page
	st := settle(t, re)
	if st.Evictions == 0 || st.CachedBytes > st.Budget {
		t.Fatalf("after reading 32 pages under a budget of 8: %+v", st)
	}
	faults.SetSchedule(remote.Always(remote.Action{Fault: remote.FailBefore}))
	s := rv.Snapshot()
	defer s.Release()
	failed := 0
	for p := PageNo(1); p <= 32; p++ {
		got, err := s.ReadPage(p, nil)
		switch {
		case err != nil:
			if !errors.Is(err, remote.ErrInjected) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrRemoteCorrupt) {
				t.Fatalf("page %d with the remote down: %v", p, err)
			}
			failed++
		case !bytes.Equal(got, w.cur.read(p)):
			t.Fatalf("page %d with the remote down: wrong bytes", p)
		}
	}
	if failed == 0 {
		t.Fatal("every evicted page read with the remote down")
	}
	faults.SetSchedule(nil)
	checkModel(t, s, w.cur)
	t.Logf("%d of 32 pages failed with the remote down; %+v", failed, re.Budget())
}

// TestBudget_Reopen: the count of images is the same after a reopen (Open
// counts them again), and eviction goes on from there.
func TestBudget_Reopen(t *testing.T) {
	rem := newFileRemote(t)
	const page = 4096
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{CacheBudget: 8 * page, CacheBytes: -1})
	v := attach(t, e, "doc", rem.url, rem.store)
	w := newVolWriter(t, v, 9, page)
	w.commit(-1, allPages(12)...)
	st := settle(t, e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTestEngine(t, dir, Options{CacheBudget: 8 * page, CacheBytes: -1})
	t.Cleanup(func() { e.Close() })
	if got := settle(t, e); got.CachedBytes != st.CachedBytes || got.OverBudget != 4*page {
		t.Fatalf("reopened: %+v, before: %+v", got, st)
	}
	v = attach(t, e, "doc", rem.url, rem.store)
	mustPush(t, v)
	if st := settle(t, e); st.CachedBytes > st.Budget || st.Evictions == 0 {
		t.Fatalf("after a push: %+v", st)
	}
	checkHead(t, v, w.cur)
	checkCount(t, e)
}

// budgetKillEnv tells a child process of TestBudget_KillDuringEviction
// where the data directory and the remote are, after which eviction batch
// to kill itself, and whether to flush Pebble's memtables first.
const budgetKillEnv = "CAMBIUM_BUDGETKILL_CHILD"

// TestBudget_KillDuringEviction: a process killed with SIGKILL between
// eviction batches (with the batches so far flushed to Pebble's tables,
// or left in its memtable and lost) leaves a data directory whose count,
// made again at open, matches what it stores, that reads every page
// right, and that goes on evicting, pulling and reading.
func TestBudget_KillDuringEviction(t *testing.T) {
	if os.Getenv(budgetKillEnv) != "" {
		return
	}
	const page = 4096
	rem := newFileRemote(t)
	root := strings.TrimPrefix(rem.url, "file://")
	wv := attach(t, newEngine(t, Options{}), "doc", rem.url, rem.store)
	w := newVolWriter(t, wv, 11, page)
	w.commit(-1, allPages(64)...)
	mustPush(t, wv)

	dir := t.TempDir()
	budget := Options{CacheBudget: 8 * page, CacheBytes: -1}
	e := openTestEngine(t, dir, Options{CacheBytes: -1})
	rv := attach(t, e, "doc", rem.url, rem.open(t))
	mustPull(t, rv)
	if _, err := rv.Hydrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.Close()
	kills := 0
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBudget_KillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d|%v", budgetKillEnv, dir, root, 1+round%3, round%2 == 0))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("round %d: child: %v\n%s", round, err, out)
		}
		kills++
		e := openTestEngine(t, dir, budget)
		rv := attach(t, e, "doc", rem.url, rem.open(t))
		settle(t, e)
		checkCount(t, e)
		checkHead(t, rv, w.cur)
		w.commit(-1, PageNo(1+round), PageNo(40+round))
		mustPush(t, wv)
		mustPull(t, rv)
		checkHead(t, rv, w.cur)
		if st := settle(t, e); st.CachedBytes > st.Budget {
			t.Fatalf("round %d: %+v", round, st)
		}
		checkCount(t, e)
		e.Close()
		// Back to every page stored, for the next child to evict.
		e = openTestEngine(t, dir, Options{CacheBytes: -1})
		rv = attach(t, e, "doc", rem.url, rem.open(t))
		if _, err := rv.Hydrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
	t.Logf("%d kills", kills)
}

// TestBudget_KillChild runs in a child process of
// TestBudget_KillDuringEviction.
func TestBudget_KillChild(t *testing.T) {
	spec := os.Getenv(budgetKillEnv)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, "|")
	dir, root, flush := parts[0], parts[1], parts[3] == "true"
	n, _ := strconv.Atoi(parts[2])
	opts := Options{CacheBudget: 8 * 4096, CacheBytes: -1}
	opts.testingKnobs.evictBatch = 8
	var opened atomic.Pointer[Engine] // the batches may begin before Open returns
	batches := 0
	opts.testingKnobs.afterEvict = func() {
		if batches++; batches == n {
			if flush {
				for opened.Load() == nil {
					time.Sleep(time.Millisecond)
				}
				opened.Load().db.Flush()
			}
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	e := openTestEngine(t, dir, opts)
	opened.Store(e)
	fs, err := remote.NewFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	attach(t, e, "doc", "file://"+root, fs)
	time.Sleep(20 * time.Second)
	t.Fatal("not killed within 20s")
}

// TestStoreUsageOf: the split of a closed data directory's store counts
// each kind of key the budget keeps: images, stubs, location records.
func TestStoreUsageOf(t *testing.T) {
	rem := newFileRemote(t)
	const page = 4096
	wv := attach(t, newEngine(t, Options{}), "doc", rem.url, rem.store)
	w := newVolWriter(t, wv, 7, page)
	w.commit(-1, allPages(40)...)
	mustPush(t, wv)

	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{CacheBudget: 1 << 30, CacheBytes: -1})
	v := attach(t, e, "doc", rem.url, rem.store)
	mustPull(t, v)
	s := v.Snapshot()
	for p := PageNo(1); p <= 10; p++ {
		if _, err := s.ReadPage(p, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Release()
	checkCount(t, e)
	b := e.budget
	want := map[string]int64{"page images": b.images.Load() / page, "stubs": b.stubs.Load(), "location records": b.locs.Load()}
	if want["page images"] == 0 || want["stubs"] == 0 || want["location records"] != want["page images"] {
		t.Fatalf("after reading 10 of 40 pulled pages: %v", want)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	u, err := StoreUsageOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, k := range u.Kinds {
		got[k.Kind] = k.Keys
		if k.Keys > 0 && k.Disk <= 0 && (k.Kind == "page images" || k.Kind == "stubs") {
			t.Errorf("%s: %d keys and no disk: %s", k.Kind, k.Keys, u)
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d keys, the budget counted %d: %s", k, got[k], n, u)
		}
	}
	if u.Files < u.Tables || u.Tables <= 0 {
		t.Errorf("files %d bytes, tables %d", u.Files, u.Tables)
	}
	if _, err := StoreUsageOf(t.TempDir()); err == nil {
		t.Error("an empty directory has a store")
	}
}

// TestBudget_ScanInMemory: a scan of a cold replica many times its disk
// budget keeps the frames it fetches ahead in the memory page cache once
// the budget is full, rather than storing each image only to evict it:
// it reads every page right, fetches each frame once, evicts little, and
// the directory stays within the budget.
func TestBudget_ScanInMemory(t *testing.T) {
	const pages, page = 4000, 4096
	rem := newFileRemote(t)
	wv := attach(t, newEngine(t, Options{}), "scan", rem.url, rem.store)
	wr := newVolWriter(t, wv, 11, page)
	wr.commit(-1, allPages(pages)...)
	mustPush(t, wv)
	var frames int64
	for _, ref := range remoteLog(t, rem.store, "scan")[0].Segments {
		for _, fr := range ref.Frames {
			frames += int64(fr.Length)
		}
	}
	e := newEngine(t, Options{CacheBudget: 256 * page, CacheBytes: 32 << 20})
	rv := attach(t, e, "scan", rem.url, rem.store)
	mustPull(t, rv)
	before := rv.RemoteStats()
	checkHead(t, rv, wr.cur)
	st := rv.RemoteStats().Sub(before)
	// A frame may be fetched twice when the scan reaches it just as the
	// evictor or the memory cache drops it: a few, more under the race
	// detector's timing (6% seen), far fewer than the fifth more the
	// scan read before the memory path.
	if st.BytesRead() > frames+frames/10 {
		t.Fatalf("scan of %d cold pages through a budget of 256: %v; want the %d bytes of their frames read about once", pages, st, frames)
	}
	bs := settle(t, e)
	if bs.Evictions > pages/4 || bs.CachedBytes+bs.MetadataBytes > bs.Budget {
		t.Fatalf("scan of %d cold pages through a budget of 256: %+v; want few evictions, within the budget", pages, bs)
	}
	checkCount(t, e)
	t.Logf("scan: %v; budget: %+v", st, bs)
}
