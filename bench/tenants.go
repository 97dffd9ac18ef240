package bench

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TenantsConfig configures the tenants workload (W7): one database per
// tenant, many tenants in one process and one remote.
type TenantsConfig struct {
	Dir     string
	Volumes int // default 10,000
	Rows    int // rows each tenant writes, default 20
	Workers int // concurrent pushes, default 32
	Remote  RemoteConfig
	// CacheBudget, when set, is the data directory's cache_budget: the
	// tenants are read in turn within it, and the result reports the
	// directory's size (issue 20).
	CacheBudget int64
}

// RunTenants creates, writes, pushes, and then opens and queries Volumes
// volumes in one data directory, one after another (pushes Workers at a
// time), through the cambium VFS, as an application with a database per
// tenant would. The same creates, writes and open-and-queries run on
// plain files (WAL, synchronous=NORMAL, the same driver) as the baseline;
// pushes have none, since no peer replicates thousands of databases from
// one process. It also reports the Go heap that each volume keeps once
// idle (no connection open, the engine open): the growth of the live heap
// over the whole run, less what the shared page cache grew, per volume.
//
// One connection to another volume stays open throughout, as in a server,
// so that the data directory's engine stays open between tenants.
func RunTenants(ctx context.Context, cfg TenantsConfig) ([]Result, error) {
	if cfg.Volumes == 0 {
		cfg.Volumes = 10000
	}
	if cfg.Rows == 0 {
		cfg.Rows = 20
	}
	if cfg.Workers == 0 {
		cfg.Workers = 32
	}
	url, store, ns, err := cfg.Remote.open(ctx, cfg.Dir)
	if err != nil {
		return nil, err
	}
	dataDir, plainDir := filepath.Join(cfg.Dir, "cambium"), filepath.Join(cfg.Dir, "plain")
	if err := os.MkdirAll(plainDir, 0o755); err != nil {
		return nil, err
	}
	params := "&remote=" + url + "&_pragma=synchronous(normal)"
	if cfg.CacheBudget > 0 {
		params += "&cache_budget=" + strconv.FormatInt(cfg.CacheBudget, 10)
	}
	cambium := func(name string) (*sql.DB, error) {
		return openCambium(dataDir, name, params)
	}
	plain := func(name string) (*sql.DB, error) {
		return openFile(plainDir, path.Base(name)+".sqlite", "_pragma=journal_mode(wal)&_pragma=synchronous(normal)")
	}
	anchor, err := cambium(ns + "anchor")
	if err != nil {
		return nil, err
	}
	defer anchor.Close()
	anchor.SetMaxOpenConns(1)
	if _, err := anchor.Exec("CREATE TABLE IF NOT EXISTS t(x)"); err != nil {
		return nil, err
	}
	heap0, cache0, err := idleHeap(anchor)
	if err != nil {
		return nil, err
	}

	names := make([]string, cfg.Volumes)
	for i := range names {
		names[i] = fmt.Sprintf("%stenant-%06d", ns, i)
	}
	write := func(open func(string) (*sql.DB, error)) (Figures, error) {
		start := time.Now()
		for _, name := range names {
			if err := tenantWrite(open, name, cfg.Rows); err != nil {
				return Figures{}, fmt.Errorf("%s: %w", name, err)
			}
		}
		return figures(len(names), time.Since(start)), nil
	}
	before := store.Stats()
	created, err := write(cambium)
	if err != nil {
		return nil, err
	}
	created.Requests = store.Stats().Sub(before).Requests()
	createdPlain, err := write(plain)
	if err != nil {
		return nil, fmt.Errorf("plain files: %w", err)
	}

	before = store.Stats()
	pushStart := time.Now()
	if err := forEach(ctx, names, cfg.Workers, func(name string) error {
		db, err := cambium(name)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = pragma(db, "cambium_push")
		return err
	}); err != nil {
		return nil, err
	}
	pushed := figures(len(names), time.Since(pushStart))
	pushed.Requests = store.Stats().Sub(before).Requests()

	heap1, cache1, err := idleHeap(anchor)
	if err != nil {
		return nil, err
	}
	perVolume := (heap1 - heap0 - (cache1 - cache0)) / int64(len(names))

	order := rand.New(rand.NewPCG(9, 10)).Perm(len(names))
	query := func(open func(string) (*sql.DB, error)) (Figures, error) {
		start := time.Now()
		for _, i := range order {
			if err := tenantQuery(open, names[i], cfg.Rows); err != nil {
				return Figures{}, fmt.Errorf("%s: %w", names[i], err)
			}
		}
		return figures(len(names), time.Since(start)), nil
	}
	before = store.Stats()
	queried, err := query(cambium)
	if err != nil {
		return nil, err
	}
	queried.Requests = store.Stats().Sub(before).Requests()
	budgetNote := ""
	if cfg.CacheBudget > 0 {
		st, err := pragma(anchor, "cambium_stats")
		if err != nil {
			return nil, err
		}
		pebbleBytes, err := dirBytes(filepath.Join(dataDir, "pebble"))
		if err != nil {
			return nil, err
		}
		cached, _ := st["cached_bytes"].(float64)
		evictions, _ := st["evictions"].(float64)
		budgetNote = fmt.Sprintf("; within a cache_budget of %s: %s of page images cached, %.0f evictions, %.2f object-store requests per open+query (pages evicted and fetched again), the Pebble store %s on disk",
			humanBytes(cfg.CacheBudget), humanBytes(int64(cached)), evictions, float64(queried.Requests)/float64(len(names)), humanBytes(pebbleBytes))
	}
	queriedPlain, err := query(plain)
	if err != nil {
		return nil, fmt.Errorf("plain files: %w", err)
	}

	base := "plain files, WAL, synchronous=NORMAL"
	res := []Result{
		{Workload: "tenants/create+write", Cambium: created},
		{Workload: "tenants/push", Cambium: pushed, Notes: []string{fmt.Sprintf(
			"%d at a time; %s per volume, %.1f requests each; no baseline: no peer replicates thousands of databases from one process",
			cfg.Workers, perOp(pushed), float64(pushed.Requests)/float64(len(names)))}},
		{Workload: "tenants/open+query", Cambium: queried},
		{Workload: "tenants/idle", Cambium: Figures{Ops: len(names), Memory: perVolume}, Notes: []string{fmt.Sprintf(
			"Go heap kept per idle volume (engine open, no connection), page cache excluded: %s; BENCHMARKS.md W7 asks <= 16 KiB",
			humanBytes(perVolume))}},
	}
	// No goal: a new volume asks the remote whether it exists, which
	// plain files need not.
	res[0].compare(base, createdPlain, 0)
	res[0].Notes = append(res[0].Notes, fmt.Sprintf("%s per volume, plain files %s; %.1f object-store requests per volume (a new volume first asks the remote whether it exists)",
		perOp(created), perOp(createdPlain), float64(created.Requests)/float64(len(names))))
	res[2].compare(base, queriedPlain, 1)
	res[2].Notes = append(res[2].Notes, fmt.Sprintf("%s per volume, plain files %s; BENCHMARKS.md W7 asks well under 1 ms%s",
		perOp(queried), perOp(queriedPlain), budgetNote))
	if cfg.CacheBudget > 0 {
		res[2].Workload += "/budget=" + binarySize(cfg.CacheBudget)
	}
	return res, nil
}

// tenantWrite creates a tenant's database and writes rows rows in one
// transaction.
func tenantWrite(open func(string) (*sql.DB, error), name string, rows int) error {
	db, err := open(name)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec("CREATE TABLE notes(id INTEGER PRIMARY KEY, tenant TEXT, body TEXT)"); err != nil {
		return err
	}
	for i := range rows {
		if _, err := tx.Exec("INSERT INTO notes(tenant, body) VALUES (?, ?)", name, strings.Repeat("note "+strconv.Itoa(i)+" ", 8)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// tenantQuery opens a tenant's database and checks its rows.
func tenantQuery(open func(string) (*sql.DB, error), name string, rows int) error {
	db, err := open(name)
	if err != nil {
		return err
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM notes WHERE tenant = ?", name).Scan(&n); err != nil {
		return err
	}
	if n != rows {
		return fmt.Errorf("%d rows, want %d", n, rows)
	}
	return nil
}

// idleHeap returns the live Go heap after a collection, and the engine's
// page cache bytes as the connection db reports them.
func idleHeap(db *sql.DB) (heap, cache int64, err error) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	st, err := pragma(db, "cambium_stats")
	if err != nil {
		return 0, 0, err
	}
	c, _ := st["engine_cache_bytes"].(float64)
	return int64(m.HeapAlloc), int64(c), nil
}

// forEach calls fn for every name, workers at a time, and returns the
// first error.
func forEach(ctx context.Context, names []string, workers int, fn func(string) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range work {
				if err := fn(name); err != nil {
					cancel(fmt.Errorf("%s: %w", name, err))
				}
			}
		})
	}
	for _, name := range names {
		select {
		case work <- name:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}

// perOp is the mean time of one operation.
func perOp(f Figures) string {
	if f.Ops == 0 {
		return "-"
	}
	d := f.Elapsed / time.Duration(f.Ops)
	if d < time.Millisecond {
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
