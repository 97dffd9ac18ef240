package engine

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// gcWriter pushes n random commits one by one from a fresh writer, calling
// after (if not nil) after each push, and returns it with its log (one
// remote version per local version).
func gcWriter(t *testing.T, rem testRemote, n int, after func(i int)) (*Volume, *volWriter, []CommitInfo) {
	t.Helper()
	e := openTestEngine(t, t.TempDir(), Options{})
	t.Cleanup(func() { e.Close() })
	v := attach(t, e, "doc", rem.url, rem.store)
	w := newVolWriter(t, v, 7, 4096)
	for i := range n {
		w.step()
		mustPush(t, v)
		if after != nil {
			after(i)
		}
	}
	log, err := v.Log()
	if err != nil || len(log) != n {
		t.Fatalf("log: %d commits, %v", len(log), err)
	}
	return v, w, log
}

// newReplica returns volume "doc" of a new data directory, attached to rem.
func newReplica(t *testing.T, rem testRemote) *Volume {
	t.Helper()
	e := openTestEngine(t, t.TempDir(), Options{})
	t.Cleanup(func() { e.Close() })
	return attach(t, e, "doc", rem.url, rem.store)
}

// remoteSize returns the number and bytes of the remote's objects.
func remoteSize(t *testing.T, s remote.Store) (int, int64) {
	t.Helper()
	objs, err := remote.ListAll(context.Background(), s, "")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, o := range objs {
		n += o.Size
	}
	return len(objs), n
}

// TestGC_Window: a collection with a window keeps every version from the
// one in force at the window's start readable from a cold replica, makes
// the older ones a clear ErrCollected, and leaves replicas at any kept
// version reading exactly the writer's pages, whichever of their segments
// were collected; a replica left behind the window catches up through
// the checkpoint.
func TestGC_Window(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	// Replicas pulled before the collection: one at a version behind the
	// window, one inside it, one at the newest version.
	behind, inside, newest := newReplica(t, rem), newReplica(t, rem), newReplica(t, rem)
	w, wr, log := gcWriter(t, rem, 40, func(i int) {
		switch i {
		case 10:
			mustPull(t, behind)
		case 30:
			mustPull(t, inside)
		case 39:
			mustPull(t, newest)
		}
	})
	insideAt := wr.hist[log[30].Version]
	pinned := inside.Snapshot()
	defer pinned.Release()

	// Remote snapshots (a replica that never pulled) opened before the
	// collection, one inside the window and one before it.
	viewer := newReplica(t, rem)
	viewInside, err := viewer.SnapshotAt(ctx, log[30].Version)
	if err != nil {
		t.Fatal(err)
	}
	defer viewInside.Release()
	viewBefore, err := viewer.SnapshotAt(ctx, log[5].Version)
	if err != nil {
		t.Fatal(err)
	}
	defer viewBefore.Release()

	baseAt := 25 // the window starts at the 26th version's commit
	objsBefore, bytesBefore := remoteSize(t, rem.store)
	res, err := w.GC(ctx, GCOptions{Retain: time.Hour, MinAge: -1, Now: log[baseAt].Time.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v (before: %d objects, %d bytes)", res, objsBefore, bytesBefore)
	if res.OldestVersion != log[baseAt].Version || res.NewestVersion != log[len(log)-1].Version {
		t.Fatalf("oldest %d, newest %d; want %d, %d", res.OldestVersion, res.NewestVersion, log[baseAt].Version, log[len(log)-1].Version)
	}
	if res.DeletedObjects == 0 {
		t.Fatalf("nothing deleted")
	}
	if n, b := remoteSize(t, rem.store); n != res.RemoteObjects || b != res.RemoteBytes {
		t.Fatalf("remote has %d objects, %d bytes; the result says %d, %d", n, b, res.RemoteObjects, res.RemoteBytes)
	}

	if vr, err := w.Verify(ctx, VerifyOptions{Remote: true}); err != nil || !vr.OK() {
		t.Fatalf("verify after gc: %+v, %v", vr, err)
	}
	if pr, err := behind.Poll(ctx); err != nil || pr.RemoteVersion != log[len(log)-1].Version {
		t.Fatalf("poll behind the window: %+v, %v", pr, err)
	}

	// The remote snapshots read as written, or, before the window, fail
	// with ErrCollected.
	checkModel(t, viewInside, wr.hist[log[30].Version])
	for p := PageNo(1); uint32(p) <= viewBefore.PageCount(); p++ {
		got, err := viewBefore.ReadPage(p, nil)
		if err != nil && !errors.Is(err, ErrCollected) {
			t.Fatalf("remote snapshot before the window, page %d: %v; want ErrCollected", p, err)
		}
		if err == nil && !bytes.Equal(got, wr.hist[log[5].Version].read(p)) {
			t.Fatalf("remote snapshot before the window, page %d: wrong bytes", p)
		}
	}

	// Every kept version reads as written, from a cold replica.
	cold := newReplica(t, rem)
	for _, c := range log {
		s, err := cold.SnapshotAt(ctx, c.Version)
		if c.Version < res.OldestVersion {
			if !errors.Is(err, ErrCollected) {
				t.Fatalf("version %d, before the window: %v; want ErrCollected", c.Version, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("version %d: %v", c.Version, err)
		}
		checkModel(t, s, wr.hist[c.Version])
		s.Release()
	}
	// The replica at the newest version reads it, its stubs into
	// collected segments found again in the checkpoints; hydrating does
	// the same for every page.
	if _, err := newest.Hydrate(ctx); err != nil {
		t.Fatalf("hydrate after gc: %v", err)
	}
	checkHead(t, newest, wr.cur)

	// A snapshot pinned inside the window reads as written; the replica
	// behind it gets a clear error, then catches up through the
	// checkpoint.
	checkModel(t, pinned, insideAt)
	s := behind.Snapshot()
	for p := PageNo(1); uint32(p) <= s.PageCount(); p++ {
		if _, err := s.ReadPage(p, nil); err != nil {
			if !errors.Is(err, ErrCollected) {
				t.Fatalf("replica behind the window, page %d: %v; want ErrCollected", p, err)
			}
			t.Logf("behind the window: %v", err)
			break
		}
	}
	s.Release()
	mustPull(t, behind)
	checkHead(t, behind, wr.cur)
	mustPull(t, inside)
	checkHead(t, inside, wr.cur)

	// Restore by time: before the window is ErrCollected, naming the time.
	if _, _, err := cold.VersionAt(ctx, log[0].Time); !errors.Is(err, ErrCollected) {
		t.Fatalf("VersionAt before the window: %v; want ErrCollected", err)
	}

	// The writer goes on pushing, and a replica follows.
	wr.step()
	mustPush(t, w)
	mustPull(t, newest)
	checkHead(t, newest, wr.cur)

	// A second collection, with no window, leaves about a fresh copy.
	res, err = w.GC(ctx, GCOptions{Retain: 0, MinAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v", res)
	cold2 := newReplica(t, rem)
	mustPull(t, cold2)
	checkHead(t, cold2, wr.cur)
	checkHead(t, newest, wr.cur)
}

// TestGC_RemoteLog: the remote's log lists the versions a restore can
// open, before and after a collection.
func TestGC_RemoteLog(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	w, _, log := gcWriter(t, rem, 12, nil)
	got, err := w.RemoteLog(ctx)
	if err != nil || len(got) != len(log) {
		t.Fatalf("remote log: %d versions, %v; want %d", len(got), err, len(log))
	}
	for i := range log {
		if got[i].Version != log[i].Version || !got[i].Time.Equal(log[i].Time) {
			t.Fatalf("remote log[%d] = %d at %s; want %d at %s", i, got[i].Version, got[i].Time, log[i].Version, log[i].Time)
		}
	}
	if _, err := w.GC(ctx, GCOptions{Retain: time.Hour, MinAge: -1, Now: log[5].Time.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err = w.RemoteLog(ctx)
	if err != nil || len(got) != len(log)-5 || got[0].Version != log[5].Version {
		t.Fatalf("remote log after gc: %v, %v; want versions from %d", got, err, log[5].Version)
	}
	cold := newReplica(t, rem)
	for _, c := range got {
		s, err := cold.SnapshotAt(ctx, c.Version)
		if err != nil {
			t.Fatalf("version %d, listed: %v", c.Version, err)
		}
		s.Release()
	}
}

// TestVolume_PruneHistory: the local records of commits older than the
// retention window are deleted, down to the newest one before it; the
// log, verify, a reopen, pushes and restores by time carry on over the
// shortened history, and RetainForever keeps it all.
func TestVolume_PruneHistory(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	dir := t.TempDir()
	e := openTestEngine(t, dir, Options{})
	v := attach(t, e, "doc", rem.url, rem.store)
	w := newVolWriter(t, v, 3, 512)
	v.SetRetain(RetainForever)
	const first = pruneMinCommits * 2
	for range first {
		w.step()
		mustPush(t, v) // each version a remote one, to restore by time
	}
	older, err := v.Log()
	if err != nil || len(older) != first {
		t.Fatalf("log: %d commits, %v", len(older), err)
	}
	// Every commit so far falls out of the window, and the next ones stay
	// in it for as long as the test takes.
	const window = 5 * time.Second
	time.Sleep(window + time.Second)
	v.SetRetain(window)
	for range pruneMinCommits + 8 {
		w.step()
	}
	mustPush(t, v)
	deadline := time.Now().Add(20 * time.Second)
	for {
		log, err := v.Log()
		if err != nil {
			t.Fatal(err)
		}
		if log[0].Version == older[first-1].Version {
			break // the newest commit before the window starts the history
		}
		if log[0].Version > older[first-1].Version || time.Now().After(deadline) {
			t.Fatalf("history starts at %d, want %d", log[0].Version, older[first-1].Version)
		}
		v.e.kickPruner()
		time.Sleep(10 * time.Millisecond)
	}
	if res, err := v.Verify(ctx, VerifyOptions{}); err != nil || len(res.Problems) > 0 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	// Time travel before the window goes to the remote.
	at, _, err := v.VersionAt(ctx, older[3].Time)
	if err != nil || at != older[3].Version {
		t.Fatalf("VersionAt %s: %d, %v; want %d", older[3].Time, at, err, older[3].Version)
	}
	e.Close()
	e = openTestEngine(t, dir, Options{})
	defer e.Close()
	v = attach(t, e, "doc", rem.url, rem.store)
	w.v = v
	checkHead(t, v, w.cur)
	w.step()
	mustPush(t, v)
	if log, err := v.Log(); err != nil || log[0].Version != older[first-1].Version {
		t.Fatalf("log after reopen: %v", err)
	}
}

// TestGC_CollectedPageChanged: a page whose segment is gone is never read
// from a checkpoint whose image of it is older than the snapshot's: if it
// changed since the checkpoint, the read is ErrCollected, not stale bytes.
// (The collector never deletes such a segment while the version is
// retained; here one is deleted by hand.)
func TestGC_CollectedPageChanged(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	w, wr, log := gcWriter(t, rem, 20, nil)
	if _, err := w.GC(ctx, GCOptions{Retain: time.Hour, MinAge: -1, Now: log[9].Time.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	k, n := log[9].Version, log[14].Version
	r, _ := w.replica()
	m, err := w.remoteMapAt(ctx, r.op(), n)
	if err != nil {
		t.Fatal(err)
	}
	// A page whose image at n differs from the one at k.
	var victim PageNo
	for p := PageNo(1); uint32(p) <= wr.hist[n].count; p++ {
		if _, _, zero, _ := m.Locate(p); !zero && !bytes.Equal(wr.hist[n].read(p), wr.hist[k].read(p)) {
			victim = p
			break
		}
	}
	if victim == 0 {
		t.Fatal("no page changed between the checkpoint and the version")
	}
	ref, _, _, _ := m.Locate(victim)
	if err := rem.store.Delete(ctx, manifest.SegmentKey("doc", ref.ID)); err != nil {
		t.Fatal(err)
	}
	s, err := newReplica(t, rem).SnapshotAt(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if got, err := s.ReadPage(victim, nil); !errors.Is(err, ErrCollected) {
		t.Fatalf("page %d of version %d, its segment gone: %v (bytes as written: %v); want ErrCollected",
			victim, n, err, bytes.Equal(got, wr.hist[n].read(victim)))
	}
}

// TestGC_Repeated: collections run one after another, with a window or
// without, and with pushes between them, compact only when the rule says
// so (never the same version twice) and keep two checkpoints at most: the
// base's and the newest; the remote does not grow from run to run when
// nothing was pushed.
func TestGC_Repeated(t *testing.T) {
	ctx := context.Background()
	for _, retain := range []time.Duration{time.Hour, 0, RetainForever} {
		t.Run(retain.String(), func(t *testing.T) {
			rem := newFileRemote(t)
			w, wr, log := gcWriter(t, rem, 30, nil)
			now := log[20].Time.Add(time.Hour) // with a window: the last ten versions
			if retain == 0 {
				now = time.Now()
			}
			var last GCResult
			for run := range 4 {
				if run == 2 {
					for range 5 {
						wr.step()
						mustPush(t, w)
					}
				}
				res, err := w.GC(ctx, GCOptions{Retain: retain, MinAge: -1, Now: now})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("run %d: %+v", run, res)
				if run == 1 || run == 3 {
					if res.Compacted || res.RemoteBytes > last.RemoteBytes || res.DeletedObjects > 0 {
						t.Fatalf("run %d, nothing pushed since the last: %+v after %+v", run, res, last)
					}
				}
				ks, err := w.listCheckpoints(ctx, w.attached.Load().op())
				if err != nil || len(ks) > 2 {
					t.Fatalf("checkpoints %v, %v; want the base's and the newest at most", ks, err)
				}
				last = res
			}
			fresh := newReplica(t, rem)
			mustPull(t, fresh)
			checkHead(t, fresh, wr.cur)
		})
	}
}

// TestGC_ReplicaCompacts: a replica whose stubs point into segments that a
// collection elsewhere deleted (the writer compacted and collected after
// the replica pulled) still compacts, reading those pages through the
// checkpoints.
func TestGC_ReplicaCompacts(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	r := newReplica(t, rem)
	w, wr, _ := gcWriter(t, rem, 20, nil)
	mustPull(t, r)
	if res, err := w.GC(ctx, GCOptions{Retain: 0, MinAge: -1}); err != nil || !res.Compacted || res.DeletedObjects == 0 {
		t.Fatalf("writer's collection: %+v, %v; want a compaction and deletions", res, err)
	}
	for range 5 { // scattered again: compaction pays
		wr.step()
		mustPush(t, w)
	}
	mustPull(t, r) // the pages left alone keep their stubs
	res, err := r.GC(ctx, GCOptions{Retain: 0, MinAge: -1})
	if err != nil || !res.Compacted {
		t.Fatalf("replica's collection: %+v, %v; want a compaction", res, err)
	}
	checkHead(t, r, wr.cur)
	cold := newReplica(t, rem)
	mustPull(t, cold)
	checkHead(t, cold, wr.cur)
}

// TestGC_ConcurrentCollectors: a collector that listed before another
// compacted writes its base checkpoint into the segments the other found
// dead (the previous compaction's); the other deletes them only a
// collection at least the minimum age later, when that checkpoint names
// them, so they stay, and every version both collectors retain reads
// exactly from a cold replica. Deleting them at once (as a collection
// with no minimum age does) would lose the versions from the slow
// collector's base on.
func TestGC_ConcurrentCollectors(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	w, wr, _ := gcWriter(t, rem, 20, nil)
	// The compaction writes several segments, some holding only pages
	// that no later commit changes: the writer's base checkpoint will name
	// none of those, the slow collector's will.
	defer func(n int) { maxSegmentBytes = n }(maxSegmentBytes)
	maxSegmentBytes = 16 << 10
	if res, err := w.GC(ctx, GCOptions{Retain: RetainForever, MinAge: -1}); err != nil || !res.Compacted {
		t.Fatalf("first compaction: %+v, %v", res, err)
	}
	// The slow collector lists, then waits before writing its base
	// checkpoint until the writer's collection has compacted and swept.
	// It pulled at version 20, so it does not compact.
	listed, proceed := make(chan struct{}), make(chan struct{})
	slowStore := &putHook{Store: rem.open(t), fn: func() { // its first Put is the checkpoint's
		close(listed)
		<-proceed
	}}
	slow := attach(t, newEngine(t, Options{}), "doc", rem.url, slowStore)
	mustPull(t, slow)
	for range 5 { // scattered again: the next compaction pays
		wr.step()
		mustPush(t, w)
	}
	log, err := w.Log()
	if err != nil {
		t.Fatal(err)
	}
	// Both windows reach back past the first compaction's version (20);
	// the writer's further.
	baseOfWriter, baseOfSlow := log[len(log)-5], log[len(log)-3]

	minAge := time.Second
	time.Sleep(minAge + 100*time.Millisecond) // everything so far is old
	var (
		slowRes GCResult
		slowErr error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		slowRes, slowErr = slow.GC(ctx, GCOptions{Retain: time.Since(baseOfSlow.Time), MinAge: time.Hour})
	}()
	select {
	case <-listed:
	case <-done:
		t.Fatalf("the slow collector wrote no checkpoint: %+v, %v", slowRes, slowErr)
	}
	res, err := w.GC(ctx, GCOptions{Retain: time.Since(baseOfWriter.Time), MinAge: minAge})
	if err != nil || !res.Compacted || res.PendingObjects == 0 {
		t.Fatalf("writer's collection: %+v, %v; want a compaction leaving the old checkpoint's segments pending", res, err)
	}
	close(proceed)
	<-done
	if slowErr != nil || slowRes.OldestVersion != baseOfSlow.Version {
		t.Fatalf("slow collection: %+v, %v; want the oldest version %d", slowRes, slowErr, baseOfSlow.Version)
	}
	readRetained := func(when string) {
		cold := newReplica(t, rem)
		for _, c := range log[len(log)-3:] {
			s, err := cold.SnapshotAt(ctx, c.Version)
			if err == nil {
				err = readVersion(s, wr.hist[c.Version], allPages(s.PageCount()))
				s.Release()
			}
			if err != nil {
				t.Fatalf("%s: version %d (retained by both): %v", when, c.Version, err)
			}
		}
	}
	readRetained("after both collections")
	time.Sleep(minAge + 100*time.Millisecond)
	if res, err = w.GC(ctx, GCOptions{Retain: time.Since(baseOfWriter.Time), MinAge: minAge}); err != nil || res.DeletedObjects == 0 {
		t.Fatalf("writer's second collection: %+v, %v; want the pending segments no checkpoint names deleted", res, err)
	}

	readRetained("after the writer collected again")
}

// TestGC_DensePreImages: a windowed collection rewrites the base's images
// of the pages changed in the window, which lie in the first bulk upload
// (mostly dead), densely, so that the remote holds about the compacted
// newest version, the window's pushes and those pre-images; every
// version of the window reads exactly from a cold replica.
func TestGC_DensePreImages(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	e := openTestEngine(t, t.TempDir(), Options{})
	w := attach(t, e, "doc", rem.url, rem.store)
	wr := newVolWriter(t, w, 11, 4096)
	wr.random = true
	wr.commit(-1, allPages(400)...) // the bulk upload: one segment of 1.6 MB
	mustPush(t, w)
	change := func() {
		wr.commit(-1, PageNo(1+wr.rng.IntN(400)), PageNo(1+wr.rng.IntN(400)))
		mustPush(t, w)
	}
	for range 60 { // scattered enough to compact
		change()
	}
	_, before := remoteSize(t, rem.store)
	const window = 10
	for range window {
		change()
	}
	_, after := remoteSize(t, rem.store)
	windowBytes := after - before
	log, err := w.Log()
	if err != nil {
		t.Fatal(err)
	}
	base := log[len(log)-window-1]
	res, err := w.GC(ctx, GCOptions{Retain: time.Since(base.Time), MinAge: -1})
	if err != nil || res.OldestVersion != base.Version || !res.Compacted || res.PreImagesRewritten == 0 {
		t.Fatalf("collection: %+v, %v; want version %d kept, a compaction and pre-images rewritten", res, err, base.Version)
	}
	// BytesRewritten: the compacted copy and the pre-images; the rest is
	// the window's pushes and the page maps.
	_, stored := remoteSize(t, rem.store)
	if limit := res.BytesRewritten + windowBytes + 64<<10; stored > limit {
		t.Fatalf("the remote holds %d bytes after the collection, want at most %d (rewritten %d, the window's pushes %d, 64 KiB of maps)", stored, limit, res.BytesRewritten, windowBytes)
	}
	cold := newReplica(t, rem)
	for _, c := range log[len(log)-window-1:] {
		s, err := cold.SnapshotAt(ctx, c.Version)
		if err == nil {
			err = readVersion(s, wr.hist[c.Version], allPages(s.PageCount()))
			s.Release()
		}
		if err != nil {
			t.Fatalf("version %d: %v", c.Version, err)
		}
	}
}

// TestGC_CatchUpIndex: a compacting collection with a window writes the
// newest checkpoint's catch-up index and deletes the rollups (and their
// level segments) that end at or before it; a replica at a retained
// version then catches up through the index in a few requests, reading
// exactly the writer's pages, also with commits pushed after the
// checkpoint; a cold reader of a retained version reads the commits the
// rollups merged.
func TestGC_CatchUpIndex(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	early, mid := newReplica(t, rem), newReplica(t, rem)
	const n = 70 // blocks of 4 and 8 commits left open: their left halves are the writer's
	w, wr, log := gcWriter(t, rem, n, func(i int) {
		switch i {
		case 20:
			mustPull(t, early)
		case 40:
			mustPull(t, mid)
			if _, err := mid.Hydrate(context.Background()); err != nil { // images, rewarmed after the catch-up
				t.Fatal(err)
			}
		}
	})
	baseAt := 10
	res, err := w.GC(ctx, GCOptions{Retain: time.Hour, MinAge: -1, Now: log[baseAt].Time.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v", res)
	if !res.Compacted || res.CheckpointVersion != log[len(log)-1].Version || res.OldestVersion != log[baseAt].Version {
		t.Fatalf("gc: %+v; want the newest version compacted, the oldest %d", res, log[baseAt].Version)
	}
	r, err := w.replica()
	if err != nil {
		t.Fatal(err)
	}
	k, err := w.readCheckpoint(ctx, r.op(), res.CheckpointVersion)
	if err != nil {
		t.Fatal(err)
	}
	if k.CatchUp == nil || Version(k.CatchUp.Since) != log[baseAt].Version {
		t.Fatalf("the compacted checkpoint's catch-up index: %+v; want one since version %d", k.CatchUp, log[baseAt].Version)
	}
	// Every rollup ends at or before the checkpoint: none is left, not
	// even the left halves of the blocks not complete yet, which the
	// writer (this process) forgets.
	rollups, err := remote.ListAll(ctx, rem.store, manifest.VolumePrefix("doc")+"r/")
	if err != nil {
		t.Fatal(err)
	}
	if len(rollups) != 0 {
		t.Fatalf("%d rollups left, the first %s; want none", len(rollups), rollups[0].Key)
	}

	pr := mustPull(t, early)
	t.Logf("pull from version %d: %+v", log[20].Version, pr)
	if pr.To != log[len(log)-1].Version || pr.Commits != n-21 || pr.Requests > 12 {
		t.Fatalf("pull through the index: %+v; want to version %d, %d commits, in at most 12 requests", pr, log[len(log)-1].Version, n-21)
	}
	checkHead(t, early, wr.cur)

	// Commits after the checkpoint merge on top of the index; the blocks
	// they complete get no rollup, their left halves gone.
	for range 3 {
		wr.step()
		mustPush(t, w)
	}
	pr = mustPull(t, mid)
	t.Logf("pull from version %d: %+v", log[40].Version, pr)
	if pr.Commits != n-41+3 {
		t.Fatalf("pull: %+v; want %d commits", pr, n-41+3)
	}
	if err := mid.Warmed(ctx); err != nil {
		t.Fatal(err)
	}
	checkHead(t, mid, wr.cur)

	// A cold reader of a retained version reads the commits instead of
	// the rollups that went.
	cold := newReplica(t, rem)
	for _, i := range []int{baseAt, 15, 33, 63, n - 1} {
		s, err := cold.SnapshotAt(ctx, log[i].Version)
		if err != nil {
			t.Fatalf("version %d: %v", log[i].Version, err)
		}
		checkModel(t, s, wr.hist[log[i].Version])
		s.Release()
	}
}
