package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/extension"
	"github.com/cambiumdb/cambium/remote"
	_ "github.com/cambiumdb/cambium/remote/s3" // RemoteConfig.URL may be s3://
)

// RemoteConfig says what object store the replication workloads use.
type RemoteConfig struct {
	// URL of a real store (s3://..., file:///...); "" uses a directory
	// under the workload's Dir.
	URL string
	// Latency emulates object storage in front of the store (default: 20
	// ms to first byte, 100 MB/s per stream, as BENCHMARKS.md asks);
	// Disabled turns emulation off.
	Latency  remote.LatencyOptions
	Disabled bool
}

var benchRemotes atomic.Int64

// open returns the store and a URL the cambium VFS resolves to it,
// wrapped in latency emulation and a counting store, and a namespace for
// the run's volume names: on a store of its own none, on a shared one
// (URL) a name no other run uses, such as "bench-1732159200123456789-3/".
func (c RemoteConfig) open(ctx context.Context, dir string) (string, *remote.CountingStore, string, error) {
	var s remote.Store
	var err error
	if c.URL != "" {
		s, err = remote.Open(ctx, c.URL)
	} else {
		s, err = remote.NewFileStore(filepath.Join(dir, "remote"))
	}
	if err != nil {
		return "", nil, "", err
	}
	if !c.Disabled {
		lat := c.Latency
		if lat == (remote.LatencyOptions{}) {
			lat = remote.LatencyOptions{FirstByte: 20 * time.Millisecond, BytesPerSecond: 100e6}
		}
		if s, err = remote.NewLatencyStore(s, lat); err != nil {
			return "", nil, "", err
		}
	}
	counted := remote.NewCountingStore(s)
	run := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), benchRemotes.Add(1))
	url := "mem://" + run
	extension.RegisterRemote(url, counted)
	ns := ""
	if c.URL != "" {
		ns = run + "/"
	}
	return url, counted, ns, nil
}

// measure runs fn and returns its time and what it moved through store,
// read and written.
func measure(store *remote.CountingStore, ops int, fn func() error) (Figures, error) {
	before := store.Stats()
	start := time.Now()
	err := fn()
	f := figures(ops, time.Since(start))
	st := store.Stats().Sub(before)
	f.Bytes, f.Requests = st.BytesRead()+st.BytesWritten(), st.Requests()
	return f, err
}

func pragma(db *sql.DB, name string) (map[string]any, error) {
	return pragmaAs[map[string]any](db, name)
}

// pragmaAs runs a Cambium pragma and decodes its JSON result into a T.
func pragmaAs[T any](db *sql.DB, name string) (T, error) {
	var out T
	var s string
	if err := db.QueryRow("PRAGMA " + name).Scan(&s); err != nil {
		return out, fmt.Errorf("PRAGMA %s: %w", name, err)
	}
	return out, json.Unmarshal([]byte(s), &out)
}

// fullCopy is the baseline of every replication workload: a replica with
// an empty data directory that downloads the whole newest version.
func fullCopy(dir, name, url string, store *remote.CountingStore) (Figures, error) {
	return measure(store, 1, func() error {
		db, err := openCambium(dir, name, "&remote="+url)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = pragma(db, "cambium_hydrate")
		return err
	})
}

// FastForwardConfig configures the fastforward workload (W1, W2): a
// replica that was current catches up after Commits small transactions.
type FastForwardConfig struct {
	Dir          string
	Rows         int  // reference table size, default 50,000
	Commits      int  // default 1,000
	RowsPerTxn   int  // rows updated per transaction, default 3
	HotRows      int  // 0: random rows of the whole table (W1); N: of the first N rows (W2)
	PushEach     bool // push after every commit (W1: paced); else once at the end (W2: burst)
	Compressible bool // rows of repeated text instead of random bytes
	Remote       RemoteConfig
	// NoLitestream leaves out the Litestream baseline, which otherwise
	// runs when FindLitestream finds or installs it (a note says when it
	// cannot).
	NoLitestream bool
}

// RunFastForward measures a replica's catch-up: the pull (metadata only),
// and the pull plus reading every changed row, against a full copy of the
// newest version and against Litestream replicating the same writes.
func RunFastForward(ctx context.Context, cfg FastForwardConfig) (out []Result, err error) {
	if cfg.Rows == 0 {
		cfg.Rows = 50000
	}
	if cfg.Commits == 0 {
		cfg.Commits = 1000
	}
	if cfg.RowsPerTxn == 0 {
		cfg.RowsPerTxn = 3
	}
	url, store, ns, err := cfg.Remote.open(ctx, cfg.Dir)
	if err != nil {
		return nil, err
	}
	volume := ns + "ff.db"
	w, err := openCambium(filepath.Join(cfg.Dir, "writer"), volume, "&remote="+url+"&_pragma=synchronous(normal)")
	if err != nil {
		return nil, err
	}
	defer w.Close()
	w.SetMaxOpenConns(1)
	if err := referenceBodies(w, cfg.Rows, cfg.Compressible); err != nil {
		return nil, err
	}
	if _, err := pragma(w, "cambium_push"); err != nil {
		return nil, err
	}
	r, err := openCambium(filepath.Join(cfg.Dir, "replica"), volume, "&remote="+url)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	r.SetMaxOpenConns(1)
	var n int
	if err := r.QueryRow("SELECT count(*) FROM items").Scan(&n); err != nil {
		return nil, err
	}

	// What the pushes upload, and how much of it is level segments: the
	// write amplification that keeps a catch-up's reads few.
	var pushed Figures
	var levelBytes int64
	push := func() error {
		res, err := pragmaAs[engine.PushResult](w, "cambium_push")
		pushed.Ops++
		pushed.Bytes += res.BytesWritten
		pushed.Requests += res.Requests
		levelBytes += res.LevelBytes
		return err
	}
	changed, err := fastForwardWrites(ctx, w, cfg, func() error {
		if cfg.PushEach {
			return push()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !cfg.PushEach {
		if err := push(); err != nil {
			return nil, err
		}
	}

	pull, err := measure(store, cfg.Commits, func() error { _, err := pragma(r, "cambium_pull"); return err })
	if err != nil {
		return nil, err
	}
	// The changed rows in an order of their own, the same in every run.
	ids := slices.Sorted(maps.Keys(changed))
	rand.New(rand.NewPCG(11, 12)).Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	read, err := measure(store, len(changed), func() error {
		for _, id := range ids {
			var q int
			if err := r.QueryRow("SELECT qty FROM items WHERE id = ?", id).Scan(&q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	full, err := fullCopy(filepath.Join(cfg.Dir, "fullcopy"), volume, url, store)
	if err != nil {
		return nil, err
	}
	name := "fastforward"
	if cfg.HotRows > 0 {
		name += "/hot"
	}
	if cfg.Compressible {
		name += "/text"
	}
	both := pull
	both.Bytes += read.Bytes
	both.Requests += read.Requests
	both.Elapsed += read.Elapsed
	res := []Result{{Workload: name + "/pull", Cambium: pull}, {Workload: name + "/pull+read", Cambium: both}}
	for i := range res {
		res[i].compareBytes("full copy of the newest version", full, 1)
	}
	// The pushes' row comes last: its baseline is not a peer's.
	defer func() {
		if err != nil {
			return
		}
		p := Result{Workload: name + "/push", Cambium: pushed}
		p.compareBytes("the same pushes without level segments", Figures{Ops: pushed.Ops, Bytes: pushed.Bytes - levelBytes, Requests: pushed.Requests}, 0)
		p.Notes = append(p.Notes, fmt.Sprintf("write amplification %.2f: the pushes uploaded %s, of which %s level segments",
			float64(pushed.Bytes)/float64(max(pushed.Bytes-levelBytes, 1)), humanBytes(pushed.Bytes), humanBytes(levelBytes)))
		out = append(out, p)
	}()
	if cfg.NoLitestream {
		return res, nil
	}
	var lf Figures
	bin, err := FindLitestream(ctx)
	if err == nil {
		lf, err = fastForwardLitestream(ctx, bin, cfg)
	}
	for i := range res {
		if err != nil {
			res[i].Notes = append(res[i].Notes, fmt.Sprintf("Litestream %s not measured: %v", LitestreamVersion, err))
			continue
		}
		res[i].compareBytes("Litestream "+LitestreamVersion+", file replica", lf, 1)
	}
	return res, nil
}

// binarySize names a size in whole GiB, MiB or KiB where it is one.
func binarySize(n int64) string {
	for _, u := range []struct {
		unit  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.unit)
		}
	}
	return humanBytes(n)
}

// fastForwardWrites runs the fastforward workload's transactions on db,
// calling after once each commit, and returns the ids of the rows changed.
// The same seed gives Cambium and each baseline the same writes.
func fastForwardWrites(ctx context.Context, db *sql.DB, cfg FastForwardConfig, after func() error) (map[int]bool, error) {
	span := cfg.Rows
	if cfg.HotRows > 0 {
		span = min(cfg.HotRows, cfg.Rows)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	changed := map[int]bool{}
	body := "randomblob(960)"
	if cfg.Compressible {
		body = "substr(replace(hex(zeroblob(480)), '00', 'lorem ipsum '), 1, 960)"
	}
	for i := range cfg.Commits {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		for range cfg.RowsPerTxn {
			id := 1 + rng.IntN(span)
			changed[id] = true
			if _, err := tx.Exec("UPDATE items SET qty = ?, body = "+body+" WHERE id = ?", i, id); err != nil {
				tx.Rollback()
				return nil, err
			}
		}
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		if err := after(); err != nil {
			return nil, err
		}
	}
	return changed, nil
}

// referenceBodies builds the reference table with random or text bodies,
// 50,000 rows a transaction.
func referenceBodies(db *sql.DB, rows int, text bool) error {
	body := "randomblob(960)"
	if text {
		body = "substr(replace(hex(zeroblob(480)), '00', 'lorem ipsum ' || i), 1, 960)"
	}
	if _, err := db.Exec("CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)"); err != nil {
		return fmt.Errorf("build reference table: %w", err)
	}
	const chunk = 50000
	for lo := 1; lo <= rows; lo += chunk {
		hi := min(lo+chunk-1, rows)
		if _, err := db.Exec(fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i+1 FROM n WHERE i < %d)
			INSERT INTO items SELECT i, abs(random()) %% 1000, %s FROM n`, lo, hi, body)); err != nil {
			return fmt.Errorf("build reference table: %w", err)
		}
	}
	if _, err := db.Exec("CREATE INDEX items_qty ON items(qty)"); err != nil {
		return fmt.Errorf("build reference table: %w", err)
	}
	return nil
}

// ColdOpenConfig configures the coldopen workload (W3, W3b): a replica
// with an empty data directory opens a remote volume and reads.
type ColdOpenConfig struct {
	Dir  string
	Rows int // default 50,000 (~51 MB)
	// Size, when set, chooses Rows for a database of about Size bytes
	// (1 GiB is about 1,050,000 rows).
	Size         int64
	Reads        int  // random point reads by id, default 200
	OpenOnly     bool // only the open and first query, no reads or scan
	Compressible bool
	Remote       RemoteConfig
}

// rowBytes is about what one reference row takes in the database, its
// index entry included (50,000 rows make 51 MB).
const rowBytes = 1024

// RunColdOpen measures, from an empty data directory: the open and first
// query, Reads random point reads, and a full scan, each against a full
// copy of the newest version.
func RunColdOpen(ctx context.Context, cfg ColdOpenConfig) ([]Result, error) {
	if cfg.Size > 0 {
		cfg.Rows = int(cfg.Size / rowBytes)
	}
	if cfg.Rows == 0 {
		cfg.Rows = 50000
	}
	if cfg.Reads == 0 {
		cfg.Reads = 200
	}
	url, store, ns, err := cfg.Remote.open(ctx, cfg.Dir)
	if err != nil {
		return nil, err
	}
	volume := ns + "cold.db"
	w, err := openCambium(filepath.Join(cfg.Dir, "writer"), volume, "&remote="+url)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := referenceBodies(w, cfg.Rows, cfg.Compressible); err != nil {
		return nil, err
	}
	if _, err := pragma(w, "cambium_push"); err != nil {
		return nil, err
	}
	r, open, err := coldOpen(filepath.Join(cfg.Dir, "replica"), volume, url, store)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	first, err := measure(store, 1, func() error {
		var q int
		return r.QueryRow("SELECT qty FROM items WHERE id = 1").Scan(&q)
	})
	if err != nil {
		return nil, err
	}
	both := first
	both.Bytes += open.Bytes
	both.Requests += open.Requests
	both.Elapsed += open.Elapsed
	full, err := fullCopy(filepath.Join(cfg.Dir, "fullcopy"), volume, url, store)
	if err != nil {
		return nil, err
	}
	name := "coldopen"
	if cfg.Size > 0 {
		name += "/" + binarySize(cfg.Size)
	}
	if cfg.Compressible {
		name += "/text"
	}
	res := []Result{{Workload: name + "/open", Cambium: open}, {Workload: name + "/open+first-query", Cambium: both}}
	if !cfg.OpenOnly {
		rng := rand.New(rand.NewPCG(7, 8))
		reads, err := measure(store, cfg.Reads, func() error {
			for range cfg.Reads {
				var q int
				if err := r.QueryRow("SELECT qty FROM items WHERE id = ?", 1+rng.IntN(cfg.Rows)).Scan(&q); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		scan, err := coldScan(filepath.Join(cfg.Dir, "scanner"), volume, url, store)
		if err != nil {
			return nil, err
		}
		res = append(res,
			Result{Workload: fmt.Sprintf("%s/%d-reads", name, cfg.Reads), Cambium: reads},
			Result{Workload: name + "/scan", Cambium: scan})
	}
	for i := range res {
		res[i].compareBytes("full copy of the newest version", full, 1)
	}
	return res, nil
}

// coldOpen opens volume from url in the empty data directory dir and
// returns the replica (for the caller to close) and what the open cost:
// the pull of the page map, without SQLite reading a page.
func coldOpen(dir, volume, url string, store *remote.CountingStore) (*sql.DB, Figures, error) {
	var r *sql.DB
	f, err := measure(store, 1, func() error {
		var err error
		if r, err = openCambium(dir, volume, "&remote="+url); err != nil {
			return err
		}
		r.SetMaxOpenConns(1)
		// A Cambium pragma opens the database file without SQLite
		// reading a page.
		var version string
		return r.QueryRow("PRAGMA cambium_version").Scan(&version)
	})
	if err != nil && r != nil {
		r.Close()
	}
	return r, f, err
}

// coldScan reads every row of the reference table of volume from url in
// the empty data directory dir (W3b), open included.
func coldScan(dir, volume, url string, store *remote.CountingStore) (Figures, error) {
	db, err := openCambium(dir, volume, "&remote="+url)
	if err != nil {
		return Figures{}, err
	}
	defer db.Close()
	return measure(store, 1, func() error {
		var n int64
		return db.QueryRow("SELECT sum(length(body)) FROM items").Scan(&n)
	})
}
