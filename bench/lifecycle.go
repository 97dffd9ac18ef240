package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/extension"
	"github.com/cambiumdb/cambium/remote"
)

// LifecycleConfig configures the lifecycle workload (issue 14): a volume
// that lives through many small pushes, then garbage collection with a
// retention window and without one.
type LifecycleConfig struct {
	Dir        string
	Rows       int // reference table size, default 50,000
	Commits    int // transactions of RowsPerTxn random rows, each pushed; default 10,000
	RowsPerTxn int // default 3
	// Window is how many of the last commits the first collection keeps
	// restorable (default a tenth of Commits).
	Window       int
	Compressible bool
	Remote       RemoteConfig
	// NoLitestream leaves out the Litestream baseline (see
	// FastForwardConfig).
	NoLitestream bool
}

// RunLifecycle builds the reference database, pushes it, then pushes
// Commits small transactions one by one, and measures against a fresh
// copy of the newest version (the same pages written to a new volume and
// pushed once): what the remote holds before garbage collection, after a
// collection that keeps the last Window commits restorable and after one
// that keeps the newest version only; each collection's time and traffic;
// and a cold replica's open and full scan of the newest version before the
// collections and after them. Litestream replicates the same writes with
// its default settings, and is then restarted with settings that snapshot
// and enforce retention every second, for the same two figures of what
// its replica holds.
func RunLifecycle(ctx context.Context, cfg LifecycleConfig) ([]Result, error) {
	if cfg.Rows == 0 {
		cfg.Rows = 50000
	}
	if cfg.Commits == 0 {
		cfg.Commits = 10000
	}
	if cfg.RowsPerTxn == 0 {
		cfg.RowsPerTxn = 3
	}
	if cfg.Window == 0 {
		cfg.Window = cfg.Commits / 10
	}
	if cfg.Window < 0 || cfg.Window > cfg.Commits {
		return nil, fmt.Errorf("lifecycle: window of %d commits out of %d", cfg.Window, cfg.Commits)
	}
	url, store, ns, err := cfg.Remote.open(ctx, cfg.Dir)
	if err != nil {
		return nil, err
	}
	volume, freshName := ns+"life.db", ns+"fresh.db"
	writerDir := filepath.Join(cfg.Dir, "writer")
	ff := FastForwardConfig{Rows: cfg.Rows, Commits: cfg.Commits, RowsPerTxn: cfg.RowsPerTxn, Compressible: cfg.Compressible, PushEach: true}
	// The writes pay no emulated latency: they are many, and no figure
	// times them. The collections and the reads do.
	writerURL := undelayed(url, store)
	windowStart, windowBytes, err := lifecycleWrites(ctx, writerDir, volume, writerURL, ff, cfg.Window)
	if err != nil {
		return nil, err
	}

	// The collector runs where the writer ran: compaction reads the
	// newest version's pages locally.
	e, err := engine.Open(engine.Options{Dir: writerDir})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	v, err := e.Volume(volume)
	if err != nil {
		return nil, err
	}
	if err := v.Attach(writerURL, store); err != nil {
		return nil, err
	}
	freshPush, err := freshCopy(ctx, e, v, freshName, url, store)
	if err != nil {
		return nil, err
	}
	fresh, err := measureVolume(ctx, filepath.Join(cfg.Dir, "cold-fresh"), freshName, url, store)
	if err != nil {
		return nil, err
	}
	before, err := measureVolume(ctx, filepath.Join(cfg.Dir, "cold-before"), volume, url, store)
	if err != nil {
		return nil, err
	}

	// The window starts between the last commit before it and the first
	// in it, so it holds exactly cfg.Window commits.
	gcWindow, resWindow, err := collect(ctx, v, store, func(now time.Time) time.Duration { return now.Sub(windowStart) })
	if err != nil {
		return nil, err
	}
	afterWindow, err := storedFigures(ctx, store, volume)
	if err != nil {
		return nil, err
	}
	gcZero, resZero, err := collect(ctx, v, store, func(time.Time) time.Duration { return 0 })
	if err != nil {
		return nil, err
	}
	after, err := measureVolume(ctx, filepath.Join(cfg.Dir, "cold-after"), volume, url, store)
	if err != nil {
		return nil, err
	}

	name := "lifecycle"
	if cfg.Compressible {
		name += "/text"
	}
	const (
		storedBefore = iota
		storedWindow
		storedAfter
		gcWindowed
		gcZeroed
		openBefore
		scanBefore
		openAfter
		scanAfter
	)
	res := []Result{
		storedBefore: {Workload: name + "/remote-before-gc", Cambium: before.stored},
		storedWindow: {Workload: fmt.Sprintf("%s/remote-after-gc-window-%d", name, cfg.Window), Cambium: afterWindow},
		storedAfter:  {Workload: name + "/remote-after-gc", Cambium: after.stored},
		gcWindowed:   {Workload: fmt.Sprintf("%s/gc-window-%d", name, cfg.Window), Cambium: gcWindow, Notes: []string{gcNote(resWindow)}},
		gcZeroed:     {Workload: name + "/gc", Cambium: gcZero, Notes: []string{gcNote(resZero) + "; it follows the windowed collection"}},
		openBefore:   {Workload: name + "/cold-open-before-gc", Cambium: before.open},
		scanBefore:   {Workload: name + "/cold-scan-before-gc", Cambium: before.scan},
		openAfter:    {Workload: name + "/cold-open", Cambium: after.open},
		scanAfter:    {Workload: name + "/cold-scan", Cambium: after.scan},
	}
	res[storedBefore].compareBytes("fresh copy", fresh.stored, 0)
	allowance := Figures{Ops: 1, Bytes: fresh.stored.Bytes + windowBytes + resWindow.PreImageBytes}
	res[storedWindow].compareBytes(fmt.Sprintf("fresh copy + the window's changed pages and metadata (its %d pushes without level segments, and the images at its start of the pages it changed)", cfg.Window), allowance, 1)
	res[storedWindow].Notes = append(res[storedWindow].Notes, fmt.Sprintf(
		"the baseline is the fresh copy's %s, plus the %s the window's pushes wrote without level segments (their segments, commits and rollups), plus the %s of the images, at the window's start, of the %d pages the window changed (what restoring its first version needs, rewritten densely); the goal is that plus the checkpoints' page maps",
		humanBytes(fresh.stored.Bytes), humanBytes(windowBytes), humanBytes(resWindow.PreImageBytes), resWindow.PreImagesRewritten))
	res[storedAfter].compareBytes("fresh copy", fresh.stored, 1/1.1)
	res[gcWindowed].compareBytes("fresh copy's one push", freshPush, 0)
	res[gcZeroed].compareBytes("fresh copy's one push", freshPush, 0)
	res[openBefore].compareRequests("fresh copy", fresh.open, 0)
	res[scanBefore].compareRequests("fresh copy", fresh.scan, 0)
	res[openAfter].compareRequests("fresh copy", fresh.open, 0)
	res[scanAfter].compareRequests("fresh copy", fresh.scan, 1/1.25)
	if cfg.NoLitestream {
		return res, nil
	}
	lsBefore, lsAfter, err := lifecycleLitestream(ctx, filepath.Join(cfg.Dir, "litestream"), ff)
	if err != nil {
		note := fmt.Sprintf("Litestream %s not measured: %v", LitestreamVersion, err)
		res[storedBefore].Notes = append(res[storedBefore].Notes, note)
		res[storedAfter].Notes = append(res[storedAfter].Notes, note)
		return res, nil
	}
	res[storedBefore].compareBytes("Litestream "+LitestreamVersion+", file replica, default settings", lsBefore, 0)
	res[storedBefore].Notes = append(res[storedBefore].Notes,
		"Litestream's defaults compact its level-0 files into level 1 every 30s and delete them 5m later, and snapshot daily: its figure includes that compaction during the writes")
	res[storedAfter].compareBytes("Litestream "+LitestreamVersion+", file replica, snapshot and retention every second", lsAfter, 0)
	res[storedAfter].Notes = append(res[storedAfter].Notes, fmt.Sprintf(
		"Litestream restarted after the writes with every level, the snapshot, its retention and the level-0 retention at 1s, then %d more commits of one row, each followed by a snapshot; its figure is what the replica then holds, unchanged for 3s",
		litestreamCycles-1))
	res[storedWindow].Notes = append(res[storedWindow].Notes, fmt.Sprintf(
		"no Litestream figure: its retention keeps snapshots for a time and the L1-L3 files back to the snapshot before the oldest kept, so no setting of %s keeps exactly the last %d commits restorable",
		LitestreamVersion, cfg.Window))
	return res, nil
}

// undelayed registers, and returns, a URL for the store that url (from
// RemoteConfig.open) resolves to, without its latency emulation.
func undelayed(url string, store *remote.CountingStore) string {
	inner := store.Unwrap()
	if l, ok := inner.(*remote.LatencyStore); ok {
		inner = l.Unwrap()
	}
	extension.RegisterRemote(url+"-undelayed", remote.NewCountingStore(inner))
	return url + "-undelayed"
}

// lifecycleWrites builds the reference database as volume in dir, pushes
// it, then runs ff's transactions, pushing after each. It returns when
// the last window commits began (after the push of the one before them)
// and the bytes their pushes wrote, level segments left out: the window's
// changed pages and its metadata (commits and rollups).
func lifecycleWrites(ctx context.Context, dir, volume, url string, ff FastForwardConfig, window int) (time.Time, int64, error) {
	w, err := openCambium(dir, volume, "&remote="+url+"&_pragma=synchronous(normal)")
	if err != nil {
		return time.Time{}, 0, err
	}
	defer w.Close()
	w.SetMaxOpenConns(1)
	if err := referenceBodies(w, ff.Rows, ff.Compressible); err != nil {
		return time.Time{}, 0, err
	}
	start := time.Now() // the window's start when it holds every commit
	if _, err := pragma(w, "cambium_push"); err != nil {
		return time.Time{}, 0, err
	}
	var (
		pushed int
		bytes  int64
	)
	_, err = fastForwardWrites(ctx, w, ff, func() error {
		res, err := pragmaAs[engine.PushResult](w, "cambium_push")
		if err != nil {
			return err
		}
		pushed++
		switch {
		case pushed > ff.Commits-window:
			bytes += res.BytesWritten - res.LevelBytes
		case pushed == ff.Commits-window:
			start = time.Now()
		}
		return nil
	})
	return start, bytes, err
}

// freshCopy writes the newest version of src, page for page, to a new
// volume named name in the same engine, and pushes it once to url: the
// volume as it would be without its history. It returns the push's
// figures.
func freshCopy(ctx context.Context, e *engine.Engine, src *engine.Volume, name, url string, store *remote.CountingStore) (Figures, error) {
	dst, err := e.Volume(name)
	if err != nil {
		return Figures{}, err
	}
	snap := src.Snapshot()
	defer snap.Release()
	base := dst.Snapshot()
	defer base.Release()
	txn, err := dst.Begin(base)
	if err != nil {
		return Figures{}, err
	}
	defer txn.Rollback()
	var page []byte
	for p := range snap.PageCount() {
		if page, err = snap.ReadPage(engine.PageNo(p+1), page[:0]); err != nil {
			return Figures{}, err
		}
		if err := txn.WritePage(engine.PageNo(p+1), page); err != nil {
			return Figures{}, err
		}
	}
	next, err := txn.Commit(engine.Durable)
	if err != nil {
		return Figures{}, err
	}
	next.Release()
	if err := dst.Attach(url, store); err != nil {
		return Figures{}, err
	}
	return measure(store, 1, func() error { _, err := dst.Push(ctx); return err })
}

// storedFigures returns what store holds of volume: its objects and their
// bytes.
func storedFigures(ctx context.Context, store remote.Store, volume string) (Figures, error) {
	rv, err := engine.StatRemoteVolume(ctx, store, volume)
	return Figures{Ops: 1, Bytes: rv.Bytes, Objects: int64(rv.Objects)}, err
}

// volumeFigures are what a store holds of a volume, and what a cold open
// and a cold full scan of its newest version cost.
type volumeFigures struct {
	stored, open, scan Figures
}

// measureVolume measures volume's volumeFigures, the cold reads each from
// an empty data directory under dir.
func measureVolume(ctx context.Context, dir, volume, url string, store *remote.CountingStore) (volumeFigures, error) {
	var f volumeFigures
	var err error
	if f.stored, err = storedFigures(ctx, store, volume); err != nil {
		return f, err
	}
	r, open, err := coldOpen(filepath.Join(dir, "open"), volume, url, store)
	if err != nil {
		return f, err
	}
	r.Close()
	f.open = open
	f.scan, err = coldScan(filepath.Join(dir, "scan"), volume, url, store)
	return f, err
}

// collect runs one garbage collection of v that deletes whatever it may,
// however young, with the retention window retain(now) returns for the
// collection's clock.
func collect(ctx context.Context, v *engine.Volume, store *remote.CountingStore, retain func(now time.Time) time.Duration) (Figures, engine.GCResult, error) {
	var res engine.GCResult
	f, err := measure(store, 1, func() error {
		now := time.Now()
		var err error
		res, err = v.GC(ctx, engine.GCOptions{Retain: retain(now), MinAge: -1, Now: now})
		return err
	})
	return f, res, err
}

// gcNote says what a collection did.
func gcNote(r engine.GCResult) string {
	s := fmt.Sprintf("oldest version kept %d of %d, checkpoint at %d; compacted: %t (%d pages, %s); deleted %d objects (%s), kept %d young; %d requests",
		r.OldestVersion, r.NewestVersion, r.CheckpointVersion, r.Compacted, r.PagesRewritten, humanBytes(r.BytesRewritten),
		r.DeletedObjects, humanBytes(r.DeletedBytes), r.KeptYoung, r.Requests)
	if r.Note != "" {
		s += "; " + r.Note
	}
	return s
}

// litestreamCompaction are Litestream settings that compact every level,
// snapshot and enforce retention every second: the least it can be made
// to keep.
const litestreamCompaction = `snapshot:
  interval: 1s
  retention: 1s
levels:
  - interval: 1s
  - interval: 1s
  - interval: 1s
l0-retention: 1ms
l0-retention-check-interval: 1s
`

// litestreamCycles is how many snapshots Litestream takes after its
// restart, the newest past all the writes: its retention prunes the lower
// levels only when it deletes a snapshot, and only back to the newest
// snapshot it deletes, so the files of the writes go two snapshots later.
// Each snapshot after the first is made possible by one more commit of a
// row's counter.
const litestreamCycles = 3

// lifecycleLitestream replicates ff's writes with Litestream at its
// default settings and returns what its replica then holds (before), and
// what it holds once restarted with litestreamCompaction (after) and
// settled.
func lifecycleLitestream(ctx context.Context, dir string, ff FastForwardConfig) (before, after Figures, err error) {
	bin, err := FindLitestream(ctx)
	if err != nil {
		return before, after, err
	}
	r, err := replicateWrites(ctx, bin, dir, ff)
	if err != nil {
		return before, after, err
	}
	defer r.close()
	if before, err = r.stored(); err != nil {
		return before, after, err
	}
	if err := r.restart(ctx, bin, litestreamCompaction); err != nil {
		return before, after, err
	}
	top, err := r.scan()
	if err != nil {
		return before, after, err
	}
	for i := range litestreamCycles {
		if err := r.waitSnapshot(ctx, top); err != nil {
			return before, after, err
		}
		if i == litestreamCycles-1 {
			break
		}
		if _, err := r.db.ExecContext(ctx, "UPDATE items SET qty = qty + 1 WHERE id = 1"); err != nil {
			return before, after, err
		}
		if top, err = r.waitPast(ctx, top); err != nil {
			return before, after, err
		}
	}
	after, err = r.settled(ctx)
	return before, after, err
}

// waitSnapshot waits until the replica has a snapshot at or past TXID txid.
func (l *litestream) waitSnapshot(ctx context.Context, txid uint64) error {
	const snapshotLevel = 9 // Litestream's
	return poll(ctx, time.Minute, "a snapshot in "+l.replica, func() (bool, error) {
		top, err := l.scanLevel(snapshotLevel, nil)
		return top >= txid, err
	})
}

// settled waits until what the replica holds stays the same for three
// seconds (three rounds of retention), and returns it.
func (l *litestream) settled(ctx context.Context) (Figures, error) {
	var last Figures
	since := time.Now()
	err := poll(ctx, time.Minute, "the replica to settle", func() (bool, error) {
		f, err := l.stored()
		if f != last {
			last, since = f, time.Now()
		}
		return time.Since(since) >= 3*time.Second, err
	})
	return last, err
}

// poll calls done every 50 ms until it returns true or an error, or
// timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
