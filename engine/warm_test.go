package engine

import (
	"bytes"
	"context"
	"testing"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
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
