package engine

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestVolume_ConcurrentReaders: while a writer commits, readers pin
// snapshots and check that each is consistent: page 1 carries exactly the
// snapshot's version and no page carries a later one. A small cache makes
// the cache's insert/replace rules race with commits.
func TestVolume_ConcurrentReaders(t *testing.T) {
	e := openTestEngine(t, t.TempDir(), Options{CacheBytes: 512 * 64})
	defer e.Close()
	v, _ := e.Volume("c")
	const pages = 50
	stamp := func(ver Version) []byte {
		b := make([]byte, 512)
		binary.BigEndian.PutUint64(b, uint64(ver))
		return b
	}
	commits := 2000
	if testing.Short() {
		commits = 300
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 9))
			for !done.Load() {
				s := v.Snapshot()
				if s.PageCount() > 0 {
					got, err := s.ReadPage(1, nil)
					if err != nil || Version(binary.BigEndian.Uint64(got)) != s.Version() {
						errs <- "page 1 does not carry its snapshot's version"
						s.Release()
						return
					}
					for range 10 {
						p := PageNo(1 + rng.Uint32N(s.PageCount()))
						got, err := s.ReadPage(p, nil)
						if err != nil || Version(binary.BigEndian.Uint64(got)) > s.Version() {
							errs <- "a page from the future"
							s.Release()
							return
						}
					}
				}
				s.Release()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for range commits {
		base := v.Snapshot()
		txn, err := v.Begin(base)
		if err != nil {
			t.Fatal(err)
		}
		next := base.Version() + 1
		txn.WritePage(1, stamp(next))
		txn.WritePage(PageNo(2+rng.IntN(pages)), stamp(next))
		snap, err := txn.Commit(Buffered)
		if err != nil {
			t.Fatal(err)
		}
		snap.Release()
		base.Release()
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Fatal(msg)
	}
}
