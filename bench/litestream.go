package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LitestreamVersion is the peer the fastforward workload compares with,
// replicating the same writes to a file replica.
const LitestreamVersion = "v0.5.18"

const litestreamPackage = "github.com/benbjohnson/litestream/cmd/litestream"

var litestreamOnce struct {
	sync.Once
	path string
	err  error
}

// FindLitestream returns the path of a litestream binary at
// LitestreamVersion: $CAMBIUM_LITESTREAM, then litestream on PATH, then in
// go env GOBIN or GOPATH/bin, and otherwise it runs go install (about a
// minute, once). The error says why none could be had.
func FindLitestream(ctx context.Context) (string, error) {
	litestreamOnce.Do(func() {
		litestreamOnce.path, litestreamOnce.err = findLitestream(ctx)
	})
	return litestreamOnce.path, litestreamOnce.err
}

func findLitestream(ctx context.Context) (string, error) {
	if p := os.Getenv("CAMBIUM_LITESTREAM"); p != "" {
		return p, checkLitestream(ctx, p)
	}
	var candidates []string
	if p, err := exec.LookPath("litestream"); err == nil {
		candidates = append(candidates, p)
	}
	gobin := goEnv(ctx, "GOBIN")
	if gobin == "" {
		if gopath := goEnv(ctx, "GOPATH"); gopath != "" {
			gobin = filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin")
		}
	}
	if gobin != "" {
		candidates = append(candidates, filepath.Join(gobin, "litestream"))
	}
	for _, p := range candidates {
		if checkLitestream(ctx, p) == nil {
			return p, nil
		}
	}
	if gobin == "" {
		return "", errors.New("litestream is not installed and there is no go toolchain to install it")
	}
	fmt.Fprintf(os.Stderr, "bench: go install %s@%s (about a minute, once)\n", litestreamPackage, LitestreamVersion)
	cmd := exec.CommandContext(ctx, "go", "install", litestreamPackage+"@"+LitestreamVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %v: %s", litestreamPackage, LitestreamVersion, err, lastLine(out))
	}
	p := filepath.Join(gobin, "litestream")
	return p, checkLitestream(ctx, p)
}

func goEnv(ctx context.Context, name string) string {
	out, err := exec.CommandContext(ctx, "go", "env", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func checkLitestream(ctx context.Context, path string) error {
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		return fmt.Errorf("%s version: %w", path, err)
	}
	if v := strings.TrimSpace(string(out)); v != LitestreamVersion {
		return fmt.Errorf("%s is %s, not %s", path, v, LitestreamVersion)
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// litestream is a running `litestream replicate` of one database to a
// file replica.
type litestream struct {
	cmd     *exec.Cmd
	replica string // the file replica's directory
	logPath string
	seen    map[string]int64 // level-0 file name: size
}

// startLitestream replicates db to a file replica under dir, syncing every
// interval, with settings (top-level YAML of Litestream's configuration
// file, "" for its defaults), and waits until the replica holds the
// database as it is. It may be started again on the same dir and db: the
// replica continues.
func startLitestream(ctx context.Context, bin, dir, db string, interval time.Duration, settings string) (*litestream, error) {
	replica := filepath.Join(dir, "replica")
	config := fmt.Sprintf("%sdbs:\n  - path: %s\n    monitor-interval: %s\n    replica:\n      type: file\n      path: %s\n      sync-interval: %s\n",
		settings, db, interval, replica, interval)
	cfgPath := filepath.Join(dir, "litestream.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	l := &litestream{replica: replica, logPath: filepath.Join(dir, "litestream.log"), seen: map[string]int64{}}
	logf, err := os.OpenFile(l.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	l.cmd = exec.Command(bin, "replicate", "-config", cfgPath)
	l.cmd.Stdout, l.cmd.Stderr = logf, logf
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start litestream: %w", err)
	}
	// Current: a first level-0 file, and then no new one for a while.
	if _, err := l.waitQuiet(ctx, 0, max(3*interval, 300*time.Millisecond)); err != nil {
		l.stop()
		return nil, err
	}
	return l, nil
}

// scan records the level-0 files present and returns the highest TXID.
func (l *litestream) scan() (uint64, error) {
	return l.scanLevel(0, l.seen)
}

// scanLevel returns the highest TXID of the replica's LTX files at level
// (0 for none), recording each file's size in seen when seen is not nil.
func (l *litestream) scanLevel(level int, seen map[string]int64) (uint64, error) {
	entries, err := os.ReadDir(filepath.Join(l.replica, "ltx", strconv.Itoa(level)))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var top uint64
	for _, e := range entries {
		txid, ok := ltxMaxTXID(e.Name())
		if !ok {
			continue
		}
		if info, err := e.Info(); err == nil && seen != nil {
			seen[e.Name()] = info.Size()
		}
		top = max(top, txid)
	}
	return top, nil
}

// ltxMaxTXID returns the highest TXID an LTX file's name
// (<min>-<max>.ltx, in hex) says it holds.
func ltxMaxTXID(name string) (uint64, bool) {
	lo, hi, ok := strings.Cut(strings.TrimSuffix(name, ".ltx"), "-")
	if !ok || !strings.HasSuffix(name, ".ltx") {
		return 0, false
	}
	if _, err := strconv.ParseUint(lo, 16, 64); err != nil {
		return 0, false
	}
	txid, err := strconv.ParseUint(hi, 16, 64)
	return txid, err == nil
}

// stored returns what the replica holds: its files and their bytes.
func (l *litestream) stored() (Figures, error) {
	f := Figures{Ops: 1}
	err := filepath.WalkDir(l.replica, func(path string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil // deleted while walking
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		f.Objects++
		f.Bytes += info.Size()
		return nil
	})
	return f, err
}

// waitPast waits until the replica has a level-0 file past TXID after.
func (l *litestream) waitPast(ctx context.Context, after uint64) (uint64, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		top, err := l.scan()
		if err != nil || top > after {
			return top, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("litestream did not replicate within 30s (log: %s)", l.logPath)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// waitQuiet waits for a file past TXID after, then until quiet passes
// with no newer one.
func (l *litestream) waitQuiet(ctx context.Context, after uint64, quiet time.Duration) (uint64, error) {
	top, err := l.waitPast(ctx, after)
	for err == nil {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(quiet):
		}
		var now uint64
		if now, err = l.scan(); now == top {
			return top, err
		}
		top = now
	}
	return 0, err
}

// since sums the level-0 files past TXID after: what a replica that was
// current at after reads to catch up, one GET a file and a LIST.
func (l *litestream) since(after uint64) Figures {
	var f Figures
	for name, size := range l.seen {
		if hi, _ := ltxMaxTXID(name); hi > after {
			f.Bytes += size
			f.Requests++
		}
	}
	f.Requests++
	return f
}

func (l *litestream) stop() {
	if l.cmd.Process != nil {
		l.cmd.Process.Kill()
		l.cmd.Wait()
	}
}

// litestreamRun is the fastforward workload's writes replicated by
// Litestream: the database, still open, and Litestream, still running.
type litestreamRun struct {
	*litestream
	db        *sql.DB
	path      string // the database file
	dir       string // Litestream's configuration, log and replica
	interval  time.Duration
	base, top uint64 // the highest TXID replicated before the writes and after them
}

func (r *litestreamRun) close() {
	r.stop()
	r.db.Close()
}

// restart stops Litestream and starts it again on the same replica with
// settings (see startLitestream).
func (r *litestreamRun) restart(ctx context.Context, bin, settings string) error {
	r.stop()
	l, err := startLitestream(ctx, bin, r.dir, r.path, r.interval, settings)
	if err != nil {
		return err
	}
	r.litestream = l
	return nil
}

// replicateWrites runs the fastforward workload's writes on a plain file
// in WAL mode (synchronous=NORMAL) in dir, replicated by Litestream to a
// file replica: after every commit when cfg.PushEach (a sync every 10 ms,
// and it waits for each commit's file), else as one burst at Litestream's
// default one-second sync interval. The caller closes the run.
func replicateWrites(ctx context.Context, bin, dir string, cfg FastForwardConfig) (*litestreamRun, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &litestreamRun{path: filepath.Join(dir, "ff.sqlite"), dir: dir, interval: time.Second}
	if cfg.PushEach {
		r.interval = 10 * time.Millisecond
	}
	var err error
	if r.db, err = sql.Open("sqlite3", "file:"+r.path+"?_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=busy_timeout(10000)"); err != nil {
		return nil, err
	}
	r.db.SetMaxOpenConns(1)
	if err := referenceBodies(r.db, cfg.Rows, cfg.Compressible); err != nil {
		r.db.Close()
		return nil, err
	}
	if r.litestream, err = startLitestream(ctx, bin, dir, r.path, r.interval, ""); err != nil {
		r.db.Close()
		return nil, err
	}
	if r.base, err = r.scan(); err != nil {
		r.close()
		return nil, err
	}
	r.top = r.base
	if _, err := fastForwardWrites(ctx, r.db, cfg, func() (err error) {
		if cfg.PushEach {
			r.top, err = r.waitPast(ctx, r.top)
		}
		return err
	}); err != nil {
		r.close()
		return nil, err
	}
	if !cfg.PushEach {
		if r.top, err = r.waitQuiet(ctx, r.base, 3*r.interval/2); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// fastForwardLitestream replicates the fastforward workload's writes with
// Litestream (see replicateWrites). Its figure is what a replica that was
// current before the writes reads to catch up: every level-0 LTX file
// written since, with one request each. Commits that share a sync share a
// file, which can only favour Litestream.
func fastForwardLitestream(ctx context.Context, bin string, cfg FastForwardConfig) (Figures, error) {
	r, err := replicateWrites(ctx, bin, filepath.Join(cfg.Dir, "litestream"), cfg)
	if err != nil {
		return Figures{}, err
	}
	defer r.close()
	// Litestream's catch-up time is not measured (its follower is not
	// run), only what the follower would read.
	f := r.since(r.base)
	f.Ops = cfg.Commits
	return f, nil
}
