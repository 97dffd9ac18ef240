package bench

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cambiumdb/cambium/engine"
)

// BudgetConfig configures the budget workload (issue 20): a cold replica
// of a large volume read within a disk budget much smaller than it.
type BudgetConfig struct {
	Dir    string
	Size   int64 // bytes of the database, default 1 GiB
	Budget int64 // the bounded replica's cache_budget, default 64 MiB
	Reads  int   // Zipf-distributed point reads by id, default 20,000
	Remote RemoteConfig
}

// BudgetFigures are what one replica of the budget workload did.
type BudgetFigures struct {
	Reads, Scan Figures
	HitRate     float64 // of the point reads (cambium_stats' hit_rate)
	CachedBytes int64   // page images stored at the end (-1: not counted)
	// MetadataBytes is the budget's estimate of its stubs' and location
	// records' disk at the end.
	MetadataBytes int64
	Evictions     int64
	// PebbleBytes and DirBytes are the sizes of the data directory's
	// Pebble store and of the whole directory (its commit log included)
	// once the replica is closed.
	PebbleBytes, DirBytes int64
	// Store splits the Pebble store by key kind (engine.StoreUsageOf).
	Store engine.StoreUsage
}

// zipfS is the Zipf exponent of the point reads: most reads go to a few
// rows, a long tail to the rest.
const zipfS = 1.1

// RunBudget writes a database of about Size bytes and pushes it, then
// runs the same reads on two cold replicas, one with cache_budget=Budget
// and one unbounded (the baseline): Reads Zipf-distributed point reads by
// id (the hot ids scattered over the table), then a full scan. It reports
// each replica's requests and bytes, the bounded one's hit rate, and the
// size of each data directory against the budget.
func RunBudget(ctx context.Context, cfg BudgetConfig) ([]Result, BudgetFigures, BudgetFigures, error) {
	if cfg.Size == 0 {
		cfg.Size = 1 << 30
	}
	if cfg.Budget == 0 {
		cfg.Budget = 64 << 20
	}
	if cfg.Reads == 0 {
		cfg.Reads = 20000
	}
	rows := int(cfg.Size / rowBytes)
	url, store, ns, err := cfg.Remote.open(ctx, cfg.Dir)
	if err != nil {
		return nil, BudgetFigures{}, BudgetFigures{}, err
	}
	volume := ns + "budget.db"
	w, err := openCambium(filepath.Join(cfg.Dir, "writer"), volume, "&remote="+url)
	if err != nil {
		return nil, BudgetFigures{}, BudgetFigures{}, err
	}
	if err := referenceBodies(w, rows, false); err == nil {
		_, err = pragma(w, "cambium_push")
	}
	w.Close()
	if err != nil {
		return nil, BudgetFigures{}, BudgetFigures{}, err
	}
	run := func(name, params string) (BudgetFigures, error) {
		dir := filepath.Join(cfg.Dir, name)
		var f BudgetFigures
		db, err := openCambium(dir, volume, "&remote="+url+params)
		if err != nil {
			return f, err
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		rng := rand.New(rand.NewPCG(20, 26))
		zipf := rand.NewZipf(rng, zipfS, 1, uint64(rows-1))
		if f.Reads, err = measure(store, cfg.Reads, func() error {
			for range cfg.Reads {
				// A multiplicative hash scatters the hot ids.
				id := 1 + int((zipf.Uint64()*0x9e3779b1)%uint64(rows))
				var q int
				if err := db.QueryRow("SELECT qty FROM items WHERE id = ?", id).Scan(&q); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return f, err
		}
		stats, err := pragma(db, "cambium_stats")
		if err != nil {
			return f, err
		}
		f.HitRate, _ = stats["hit_rate"].(float64)
		if f.Scan, err = measure(store, 1, func() error {
			var n int64
			return db.QueryRow("SELECT sum(length(body)) FROM items").Scan(&n)
		}); err != nil {
			return f, err
		}
		// Let the evictor catch up with the scan, and have Pebble free
		// the disk of what it evicted, before measuring.
		deadline := time.Now().Add(time.Minute)
		for {
			if stats, err = pragma(db, "cambium_stats"); err != nil {
				return f, err
			}
			cached, _ := stats["cached_bytes"].(float64)
			meta, _ := stats["metadata_bytes"].(float64)
			pending, _ := stats["evicted_uncompacted_bytes"].(float64)
			f.CachedBytes, f.MetadataBytes = int64(cached), int64(meta)
			if cfg.Budget == 0 || params == "" || f.CachedBytes+f.MetadataBytes <= cfg.Budget && pending == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		ev, _ := stats["evictions"].(float64)
		f.Evictions = int64(ev)
		if err := db.Close(); err != nil {
			return f, err
		}
		if f.PebbleBytes, err = dirBytes(filepath.Join(dir, "pebble")); err != nil {
			return f, err
		}
		if f.Store, err = engine.StoreUsageOf(dir); err != nil {
			return f, err
		}
		f.DirBytes, err = dirBytes(dir)
		return f, err
	}
	bounded, err := run("bounded", "&cache_budget="+fmt.Sprint(cfg.Budget))
	if err != nil {
		return nil, bounded, BudgetFigures{}, err
	}
	unbounded, err := run("unbounded", "")
	if err != nil {
		return nil, bounded, unbounded, err
	}
	name := "budget/" + binarySize(cfg.Size) + "/" + binarySize(cfg.Budget)
	reads := Result{Workload: fmt.Sprintf("%s/%d-zipf-reads", name, cfg.Reads), Cambium: bounded.Reads}
	reads.compareRequests("unbounded replica", unbounded.Reads, 0)
	reads.compareBytes("unbounded replica", unbounded.Reads, 0)
	scan := Result{Workload: name + "/scan", Cambium: bounded.Scan}
	scan.compareRequests("unbounded replica", unbounded.Scan, 0)
	scan.compareBytes("unbounded replica", unbounded.Scan, 0)
	size := Result{Workload: name + "/pebble-size", Cambium: Figures{Ops: 1, Bytes: bounded.PebbleBytes}}
	size.compareBytes("unbounded replica", Figures{Ops: 1, Bytes: unbounded.PebbleBytes}, 0)
	size.Notes = []string{fmt.Sprintf("bounded replica: hit rate %.3f over the point reads (unbounded %.3f); %s of page images and %s of metadata at the end (budget %s), %d evictions; its Pebble store %s (%.2fx the budget; target <= 1.1x), its whole data directory %s (the commit log included); the unbounded replica's Pebble store %s",
		bounded.HitRate, unbounded.HitRate, humanBytes(bounded.CachedBytes), humanBytes(bounded.MetadataBytes), humanBytes(cfg.Budget), bounded.Evictions,
		humanBytes(bounded.PebbleBytes), float64(bounded.PebbleBytes)/float64(cfg.Budget), humanBytes(bounded.DirBytes), humanBytes(unbounded.PebbleBytes)),
		"bounded replica's Pebble store by key kind: " + bounded.Store.String()}
	return []Result{reads, scan, size}, bounded, unbounded, nil
}

// dirBytes returns the disk space the files under dir take (allocated
// blocks, as du counts them: the commit log's unwritten tail takes none).
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	return n, err
}
