package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/remote"
)

// TestGC_Faults: collections through a store that fails a random tenth of
// its reads, lists, writes and deletes (before or after the request takes
// effect), or delays them, fail with the injected error; after each failed
// attempt the remote is valid (a cold replica reads every retained version
// exactly, a replica reads its newest version, a replica left behind
// catches up), and retrying finishes the job: the remote holds what a
// collection leaves.
func TestGC_Faults(t *testing.T) {
	const rounds = 5
	actions := []remote.Action{{Fault: remote.FailBefore}, {Fault: remote.FailAfter}, {Fault: remote.Delay, Delay: time.Millisecond}}
	ops := []remote.Op{remote.OpGet, remote.OpGetRange, remote.OpList, remote.OpPut, remote.OpCreate, remote.OpDelete}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(seed, 0xfa))
			rem := newFileRemote(t)
			fs := remote.NewFaultStore(rem.store, nil)
			quiet := slog.New(&warnRecorder{})
			v := attach(t, newEngine(t, Options{Logger: quiet}), "doc", rem.url, fs)
			w := newVolWriter(t, v, seed, 4096)
			w.commit(-1, allPages(32)...)
			mustPush(t, v)
			reader := newReplica(t, rem)
			var oldest Version // the oldest retained version
			var attempts, failed, deleted int
			for round := range rounds {
				// A replica left behind by the pushes to come, maybe
				// behind the window: it must catch up after any attempt.
				behind := newReplica(t, rem)
				mustPull(t, behind)
				for range 5 + rng.IntN(10) {
					w.step()
					mustPush(t, v)
				}
				mustPull(t, reader)
				log, err := v.Log()
				if err != nil {
					t.Fatal(err)
				}
				// A window from a version between the oldest retained
				// and the newest.
				from := sort.Search(len(log), func(i int) bool { return log[i].Version >= oldest })
				b := from + rng.IntN(len(log)-from)
				now := time.Now()
				opts := GCOptions{Retain: now.Sub(log[b].Time), MinAge: -1, Now: now}
				base := log[b].Version

				var res GCResult
				for try := 0; ; try++ {
					fs.SetSchedule(remote.Random(seed<<8|uint64(round*100+try), 0.1, actions, ops...))
					res, err = v.GC(ctx, opts)
					fs.SetSchedule(nil)
					attempts++
					deleted += res.DeletedObjects
					oldest = max(oldest, res.OldestVersion)
					if err == nil {
						break
					}
					failed++
					if !errors.Is(err, remote.ErrInjected) {
						t.Fatalf("round %d, attempt %d: %v; want an injected failure", round, try, err)
					}
					if try == 100 {
						t.Fatalf("round %d: 100 attempts failed, the last with %v", round, err)
					}
					checkRetained(t, rem, w, log, oldest)
					checkHead(t, reader, w.cur)
					if behind != nil {
						mustPull(t, behind)
						checkHead(t, behind, w.cur)
						behind = nil
					}
				}
				if res.OldestVersion != base {
					t.Fatalf("round %d: oldest version %d, want %d", round, res.OldestVersion, base)
				}
				checkLayout(t, rem.store, "doc", base)
				checkRetained(t, rem, w, log, oldest)
				checkHead(t, reader, w.cur)
			}
			t.Logf("%d collections took %d attempts (%d failed); %d objects deleted; injected %v", rounds, attempts, failed, deleted, fs.Injected())
			if failed == 0 || deleted == 0 {
				t.Fatal("no fault reached a collection, or nothing was deleted: the test proves nothing")
			}
		})
	}
}

// checkRetained checks from a cold replica (a new data directory) that
// every version of log from oldest on reads exactly as w wrote it, and that
// the older ones read so too or are ErrCollected.
func checkRetained(t *testing.T, rem testRemote, w *volWriter, log []CommitInfo, oldest Version) {
	t.Helper()
	ctx := context.Background()
	cold := attach(t, newEngine(t, Options{}), w.v.Name(), rem.url, rem.open(t))
	for _, c := range log {
		s, err := cold.SnapshotAt(ctx, c.Version)
		if err == nil {
			err = readVersion(s, w.hist[c.Version], allPages(s.PageCount()))
			s.Release()
		}
		judgeRead(t, "a cold replica's SnapshotAt", c.Version, oldest, err)
	}
}
