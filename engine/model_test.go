package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// modelVersion is the reference: the full page array at one version.
type modelVersion struct {
	pages    map[PageNo][]byte // absent pages read as zeros
	count    uint32
	pageSize int
}

func (m modelVersion) read(p PageNo) []byte {
	if b, ok := m.pages[p]; ok {
		return b
	}
	return make([]byte, m.pageSize)
}

func (m modelVersion) clone() modelVersion {
	c := modelVersion{pages: make(map[PageNo][]byte, len(m.pages)), count: m.count, pageSize: m.pageSize}
	for p, b := range m.pages {
		c.pages[p] = b
	}
	return c
}

func openTestEngine(tb testing.TB, dir string, opts Options) *Engine {
	tb.Helper()
	opts.Dir = dir
	e, err := Open(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// TestEngine_Model runs random page writes, truncations, commits,
// rollbacks, reopenings and reads across pinned snapshots against an
// in-memory model, comparing every read. A tiny cache and spill threshold
// make eviction and spilling happen often.
func TestEngine_Model(t *testing.T) {
	seed := modelSeed()
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	for _, pageSize := range []int{512, 4096} {
		t.Run(fmt.Sprintf("page=%d/seed=%d", pageSize, seed), func(t *testing.T) {
			runModel(t, seed, steps, pageSize, false)
		})
	}
}

// TestShare_Model is TestEngine_Model through an Engine that joined the
// directory's owner (in the same process, for the race detector's sake),
// with the owner writing too: every read of the joined Engine, cached or
// not, sees what the model says.
func TestShare_Model(t *testing.T) {
	seed := modelSeed()
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	for _, pageSize := range []int{512, 4096} {
		t.Run(fmt.Sprintf("page=%d/seed=%d", pageSize, seed), func(t *testing.T) {
			runModel(t, seed, steps, pageSize, true)
		})
	}
}

// modelSeed returns the seed of the model tests: $CAMBIUM_MODEL_SEED, or 1.
func modelSeed() uint64 {
	seed := uint64(1)
	if s := os.Getenv("CAMBIUM_MODEL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	return seed
}

func runModel(t *testing.T, seed uint64, steps, pageSize int, shared bool) {
	rng := rand.New(rand.NewPCG(seed, uint64(pageSize)))
	dir := t.TempDir()
	opts := Options{CacheBytes: int64(pageSize) * 40, SpillBytes: int64(pageSize) * 6}
	// With shared, e is an Engine that joined owner; else owner is e.
	var e, owner *Engine
	var v, ov *Volume
	open := func() {
		owner = openTestEngine(t, dir, opts)
		e = owner
		if shared {
			jopts := opts
			jopts.testingKnobs.joinOwn = true
			if e = openTestEngine(t, dir, jopts); e.cl == nil {
				t.Fatal("the second Engine did not join the first")
			}
		}
		var err error
		if v, err = e.Volume("model/vol"); err != nil {
			t.Fatal(err)
		}
		if ov, err = owner.Volume("model/vol"); err != nil {
			t.Fatal(err)
		}
	}
	closeAll := func() {
		if e != owner {
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := owner.Close(); err != nil {
			t.Fatal(err)
		}
	}
	open()
	defer func() { closeAll() }()

	history := []modelVersion{{pages: map[PageNo][]byte{}, pageSize: pageSize}}
	type pinned struct {
		snap *Snapshot
		ver  Version
	}
	var pins []pinned
	page := func(tag int) []byte {
		b := make([]byte, pageSize)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[0] = byte(tag)
		return b
	}
	check := func(s *Snapshot, want modelVersion, where string) {
		t.Helper()
		if s.PageCount() != want.count {
			t.Fatalf("%s: version %d has %d pages, model %d", where, s.Version(), s.PageCount(), want.count)
		}
		for range 4 {
			if want.count == 0 {
				return
			}
			p := PageNo(1 + rng.Uint32N(want.count))
			got, err := s.ReadPage(p, nil)
			if err != nil {
				t.Fatalf("%s: read page %d at version %d: %v", where, p, s.Version(), err)
			}
			if !bytes.Equal(got, want.read(p)) {
				t.Fatalf("%s: page %d at version %d differs from the model", where, p, s.Version())
			}
		}
	}

	for step := range steps {
		head := history[len(history)-1]
		switch op := rng.IntN(10); {
		case op < 6: // a write transaction
			w := v
			if shared && rng.IntN(3) == 0 {
				w = ov // the owner's own
			}
			base := w.Snapshot()
			txn, err := w.Begin(base)
			if err != nil {
				t.Fatalf("step %d: begin: %v", step, err)
			}
			next := head.clone()
			for range 1 + rng.IntN(12) {
				switch {
				case rng.IntN(8) == 0 && next.count > 0:
					n := rng.Uint32N(next.count + 1)
					if err := txn.Truncate(n); err != nil {
						t.Fatal(err)
					}
					for p := range next.pages {
						if uint32(p) > n {
							delete(next.pages, p)
						}
					}
					next.count = n
				default:
					p := PageNo(1 + rng.IntN(int(next.count)+3))
					img := page(step)
					if err := txn.WritePage(p, img); err != nil {
						t.Fatalf("step %d: write page %d: %v", step, p, err)
					}
					next.pages[p] = img
					next.count = max(next.count, uint32(p))
				}
				// Reads inside the transaction see its own writes.
				if next.count > 0 {
					p := PageNo(1 + rng.Uint32N(next.count))
					got, err := txn.ReadPage(p, nil)
					if err != nil || !bytes.Equal(got, next.read(p)) {
						t.Fatalf("step %d: txn read of page %d: %v (equal %v)", step, p, err, bytes.Equal(got, next.read(p)))
					}
				}
			}
			if rng.IntN(6) == 0 {
				if err := txn.Rollback(); err != nil {
					t.Fatal(err)
				}
				base.Release()
				break
			}
			snap, err := txn.Commit(Buffered)
			if err != nil {
				t.Fatalf("step %d: commit: %v", step, err)
			}
			base.Release()
			if snap.Version() == Version(len(history)) {
				history = append(history, next)
			} else if snap.Version() != Version(len(history)-1) {
				t.Fatalf("step %d: commit made version %d after %d", step, snap.Version(), len(history)-1)
			}
			check(snap, history[snap.Version()], fmt.Sprintf("step %d after commit", step))
			snap.Release()
		case op < 8: // pin a snapshot to read later
			s := v.Snapshot()
			pins = append(pins, pinned{s, s.Version()})
		case op < 9: // read through every pinned snapshot, then drop some
			for _, p := range pins {
				check(p.snap, history[p.ver], fmt.Sprintf("step %d pinned", step))
			}
			for len(pins) > 0 && rng.IntN(2) == 0 {
				i := rng.IntN(len(pins))
				pins[i].snap.Release()
				pins = append(pins[:i], pins[i+1:]...)
			}
		default: // a second writer is refused; sometimes reopen the engine
			s := v.Snapshot()
			if txn, err := v.Begin(s); err != nil {
				t.Fatalf("step %d: begin: %v", step, err)
			} else if _, err := v.Begin(s); err == nil {
				t.Fatalf("step %d: a second write transaction began", step)
			} else {
				txn.Rollback()
			}
			s.Release()
			if rng.IntN(4) == 0 {
				for _, p := range pins {
					p.snap.Release()
				}
				pins = nil
				checkPruned(t, ov, fmt.Sprintf("step %d", step))
				closeAll()
				open()
				s := v.Snapshot()
				if s.Version() != Version(len(history)-1) {
					t.Fatalf("step %d: reopened at version %d, want %d", step, s.Version(), len(history)-1)
				}
				check(s, history[len(history)-1], fmt.Sprintf("step %d after reopen", step))
				s.Release()
			}
		}
	}
	for _, p := range pins {
		check(p.snap, history[p.ver], "end")
		p.snap.Release()
	}
	for {
		more, err := ov.pruneStep()
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	checkPruned(t, ov, "end")
	t.Logf("%d versions, seed %d", len(history)-1, seed)
}

// checkPruned fails if a page of v has more than one image at or before
// the version the pruner is done through: it leaves only the newest.
func checkPruned(t *testing.T, v *Volume, where string) {
	t.Helper()
	v.mu.Lock()
	through := v.mu.prunedThrough
	v.mu.Unlock()
	id := VolumeID(v.id.Load())
	it, err := v.e.newIter(&pebble.IterOptions{LowerBound: volumePagesStart(id), UpperBound: volumePagesEnd(id)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	old := map[PageNo][]Version{}
	for it.First(); it.Valid(); it.Next() {
		if _, p, u, ok := decodePageKey(it.Key()); ok && u <= through {
			old[p] = append(old[p], u)
		}
	}
	for p, vers := range old {
		if len(vers) > 1 {
			t.Fatalf("%s: page %d has images at versions %v, all at or before %d, through which the pruner is done", where, p, vers, through)
		}
	}
}
