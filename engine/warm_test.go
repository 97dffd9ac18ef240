package engine

import (
	"bytes"
	"context"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
)

// TestReplication_LevelSegments: rollups of levels 2, 5, 8... name a dense
// level segment holding every page their commits changed, at their
// version; a replica catching up reads the changed pages from a few
// segments, and every page equals the writer's.
func TestReplication_LevelSegments(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	r := newReplica(t, rem)
	mustPull(t, r) // nothing yet
	w, wr, _ := gcWriter(t, rem, 33, nil)
	_ = w
	raw, err := rem.store.Get(ctx, manifest.RollupKey("doc", 5, 0))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.DecodeMap(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Segments) != 1 || !m.Segments[0].Pages.Equals(m.Changeset) {
		t.Fatalf("rollup of level 5 names %d segments holding %d of its %d pages; want one level segment holding all",
			len(m.Segments), m.Segments[0].Pages.GetCardinality(), m.Changeset.GetCardinality())
	}
	res := mustPull(t, r)
	if _, err := r.Hydrate(ctx); err != nil {
		t.Fatal(err)
	}
	checkHead(t, r, wr.cur)
	// The 33 commits' pages come from the level segments of commits 1..16
	// and 17..32 and the segment of commit 33: about three objects.
	snap := r.Snapshot()
	defer snap.Release()
	all := roaring.New()
	all.AddRange(1, uint64(snap.PageCount())+1)
	stubs, err := r.stubsOf(snap, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(stubs) != 0 {
		t.Fatalf("%d stubs left after hydrate", len(stubs))
	}
	t.Logf("pull: %+v", res)
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
