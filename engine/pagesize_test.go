package engine

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/remote"
)

// resize commits what VACUUM does after PRAGMA page_size: new images of
// every page at the old size, then Txn.SetPageSize cutting the first
// length bytes into pages of size bytes. It returns the new head.
func (w *volWriter) resize(size int, length int64) Version {
	w.t.Helper()
	ver := commitWith(w.t, w.v, func(txn *Txn) error {
		for p := PageNo(1); uint32(p) <= w.cur.count; p++ {
			img := w.body()
			if err := txn.WritePage(p, img); err != nil {
				return err
			}
			w.cur.pages[p] = img
		}
		return txn.SetPageSize(size, length)
	})
	var all []byte
	for p := PageNo(1); uint32(p) <= w.cur.count; p++ {
		all = append(all, w.cur.read(p)...)
	}
	w.cur = modelVersion{pages: map[PageNo][]byte{}, count: uint32(length / int64(size)), pageSize: size}
	for q := PageNo(1); uint32(q) <= w.cur.count; q++ {
		w.cur.pages[q] = all[int64(q-1)*int64(size):][:size]
	}
	w.size = size
	w.hist[ver] = w.cur.clone()
	return ver
}

// checkSized is checkModel that also checks the page size.
func checkSized(t testing.TB, snap *Snapshot, want modelVersion) {
	t.Helper()
	if snap.PageSize() != want.pageSize {
		t.Fatalf("version %d has %d-byte pages, want %d", snap.Version(), snap.PageSize(), want.pageSize)
	}
	checkModel(t, snap, want)
}

// TestTxn_SetPageSize: a transaction that changes the page size rewrites
// every page at the new size, larger or smaller, with or without pages it
// spilled; older snapshots keep the old size; bad sizes and lengths are
// ErrPageSize and leave the transaction as it was.
func TestTxn_SetPageSize(t *testing.T) {
	for _, c := range []struct {
		name     string
		from, to int
		spill    int64
	}{{"Grow", 4096, 16384, 0}, {"Shrink", 16384, 1024, 0}, {"GrowSpilled", 1024, 8192, 3000}, {"ShrinkSpilled", 8192, 512, 20000}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, Options{SpillBytes: c.spill})
			v, err := e.Volume("resize")
			if err != nil {
				t.Fatal(err)
			}
			w := newVolWriter(t, v, 3, c.from)
			w.commit(-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
			w.step()
			before := v.Snapshot()
			defer before.Release()
			want := w.hist[before.Version()]
			length := int64(w.cur.count) * int64(c.from) / int64(c.to) * int64(c.to)
			w.resize(c.to, length)
			checkSized(t, before, want)
			checkHead(t, v, w.cur)
			for range 5 {
				w.step()
				checkHead(t, v, w.cur)
			}
			if log, err := v.Log(); err != nil || log[len(log)-1].PageSize != c.to {
				t.Fatalf("log: %+v, %v", log, err)
			}
			for ver, m := range w.hist {
				if ver == 0 {
					continue
				}
				s, err := v.SnapshotAt(context.Background(), ver)
				if err != nil {
					t.Fatalf("at %d: %v", ver, err)
				}
				checkSized(t, s, m)
				s.Release()
			}
			e.Close()
			e = openTestEngine(t, e.opts.Dir, Options{})
			defer e.Close()
			v, _ = e.Volume("resize")
			checkHead(t, v, w.cur)
		})
	}
	t.Run("ErrPageSize", func(t *testing.T) {
		v, err := newEngine(t, Options{}).Volume("bad")
		if err != nil {
			t.Fatal(err)
		}
		w := newVolWriter(t, v, 4, 4096)
		w.commit(-1, 1, 2, 3, 4)
		base := v.Snapshot()
		defer base.Release()
		txn, err := v.Begin(base)
		if err != nil {
			t.Fatal(err)
		}
		defer txn.Rollback()
		for _, bad := range []struct {
			size   int
			length int64
		}{{3000, 12000}, {8192, 4096}, {8192, 5 * 8192}, {1024, -1024}, {100000, 0}} {
			if err := txn.SetPageSize(bad.size, bad.length); !errors.Is(err, ErrPageSize) {
				t.Fatalf("SetPageSize(%d, %d): %v, want ErrPageSize", bad.size, bad.length, err)
			}
		}
		if txn.PageSize() != 4096 || txn.PageCount() != 4 {
			t.Fatalf("after refusals: %d pages of %d bytes", txn.PageCount(), txn.PageSize())
		}
	})
}

// TestReplication_PageSizeChange: a page size change is pushed (in a push
// whose range spans it), pulled by a replica that had the old size and
// read there lazily, while a snapshot pinned before it keeps reading the
// old size; every pushed version on both sides of it reads as written
// from remote snapshots and from a cold replica; a collection across it
// keeps what it must, and verify finds the remote sound.
func TestReplication_PageSizeChange(t *testing.T) {
	forStores(t, func(t *testing.T, rem testRemote) {
		ctx := context.Background()
		wv := attach(t, newEngine(t, Options{}), "resize", rem.url, rem.store)
		w := newVolWriter(t, wv, 5, 4096)
		w.commit(-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
		var pushed []Version
		for range 3 {
			w.step()
			pushed = append(pushed, mustPush(t, wv).To)
		}
		rv := attach(t, newEngine(t, Options{}), "resize", rem.url, rem.open(t))
		mustPull(t, rv)
		old := rv.Snapshot()
		defer old.Release()
		checkSized(t, old, w.cur) // every page fetched and stored at 4 KiB

		// One push: a commit before the change, the change, commits after.
		w.step()
		w.resize(16384, int64(w.cur.count)*4096/16384*16384)
		w.step()
		w.step()
		res := mustPush(t, wv)
		pushed = append(pushed, res.To)
		maps := remoteLog(t, rem.store, "resize")
		if m := maps[len(maps)-1]; m.PageSize != 16384 || !m.Rewrites() {
			t.Fatalf("pushed map: page size %d, minimum count %d; want 16384 and a rewrite", m.PageSize, m.MinCount)
		}
		if pr := mustPull(t, rv); pr.To != res.To {
			t.Fatalf("pull %+v, want to %d", pr, res.To)
		}
		checkSized(t, old, w.hist[old.Version()])
		checkHead(t, rv, w.cur)
		if s := rv.Snapshot(); s.PageSize() != 16384 {
			t.Fatalf("replica head has %d-byte pages", s.PageSize())
		} else {
			s.Release()
		}

		// Back to small pages, pushed alone, and more commits.
		w.resize(1024, int64(w.cur.count)*16384)
		pushed = append(pushed, mustPush(t, wv).To)
		for range 4 {
			w.step()
			pushed = append(pushed, mustPush(t, wv).To)
		}
		mustPull(t, rv)
		checkHead(t, rv, w.cur)
		checkSized(t, old, w.hist[old.Version()])

		// Time travel across both changes, on the replica and on a cold
		// one reading the remote.
		cold := attach(t, newEngine(t, Options{}), "resize", rem.url, rem.open(t))
		for _, v := range []*Volume{rv, cold} {
			for _, ver := range pushed {
				s, err := v.SnapshotAt(ctx, ver)
				if err != nil {
					t.Fatalf("at %d: %v", ver, err)
				}
				checkSized(t, s, w.hist[ver])
				s.Release()
			}
		}
		mustPull(t, cold)
		checkHead(t, cold, w.cur)
		if vr, err := wv.Verify(ctx, VerifyOptions{Remote: true}); err != nil || !vr.OK() {
			t.Fatalf("verify: %+v, %v", vr, err)
		}

		// A collection whose window starts before the first change keeps
		// every version from there; one that keeps only the newest
		// compacts it into a checkpoint of 1 KiB pages.
		log, err := wv.Log()
		if err != nil {
			t.Fatal(err)
		}
		gr, err := wv.GC(ctx, GCOptions{Retain: time.Hour, MinAge: -1, Now: log[2].Time.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for _, ver := range pushed {
			if ver < gr.OldestVersion {
				continue
			}
			s, err := attach(t, newEngine(t, Options{}), "resize", rem.url, rem.open(t)).SnapshotAt(ctx, ver)
			if err != nil {
				t.Fatalf("after gc, at %d: %v", ver, err)
			}
			checkSized(t, s, w.hist[ver])
			s.Release()
		}
		if _, err := wv.GC(ctx, GCOptions{Retain: 0, MinAge: -1, Now: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		late := attach(t, newEngine(t, Options{}), "resize", rem.url, rem.open(t))
		mustPull(t, late)
		checkHead(t, late, w.cur)
		if vr, err := wv.Verify(ctx, VerifyOptions{Remote: true}); err != nil || !vr.OK() {
			t.Fatalf("verify after gc: %+v, %v", vr, err)
		}
		checkSized(t, old, w.hist[old.Version()])
	})
}

// TestReplication_PageSizePendingPush: a push whose range spans a page size
// change loses its claim's response, the writer restarts, and the retry
// claims the same map; a replica that had the old size then pulls it.
func TestReplication_PageSizePendingPush(t *testing.T) {
	ctx := context.Background()
	mem := remote.NewMemStore()
	var creates atomic.Int32
	faulty := remote.NewFaultStore(mem, remote.ScheduleFunc(func(r remote.Request) remote.Action {
		if r.Op == remote.OpCreate && strings.Contains(r.Key, "/c/") && creates.Add(1) == 2 {
			return remote.Action{Fault: remote.FailAfter}
		}
		return remote.Action{}
	}))
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{})
	v := attach(t, e, "pending", "mem://pending", faulty)
	w := newVolWriter(t, v, 8, 2048)
	w.commit(-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	mustPush(t, v)
	r := attach(t, newEngine(t, Options{}), "pending", "mem://pending", mem)
	mustPull(t, r)
	old := r.Snapshot()
	defer old.Release()
	checkSized(t, old, w.cur)
	oldModel := w.cur.clone()

	w.step()
	w.resize(8192, int64(w.cur.count)*2048/8192*8192)
	w.step()
	if _, err := v.Push(ctx); !errors.Is(err, remote.ErrInjected) {
		t.Fatalf("push: %v, want the injected fault", err)
	}
	e.Close()
	e = openTestEngine(t, dir, Options{})
	defer e.Close()
	v = attach(t, e, "pending", "mem://pending", faulty)
	head, _, _ := v.Head()
	if res, err := v.Push(ctx); err != nil || res.To != head {
		t.Fatalf("retry: %+v, %v; want to %d", res, err, head)
	}
	if log := remoteLog(t, mem, "pending"); len(log) != 2 || log[1].PageSize != 8192 || !log[1].Rewrites() {
		t.Fatalf("remote log: %d maps; want 2, the second of 8 KiB pages rewriting every page", len(log))
	}
	mustPull(t, r)
	s := r.Snapshot()
	defer s.Release()
	checkSized(t, s, w.cur)
	checkSized(t, old, oldModel)
}
