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
	level0  string // the replica's directory of level-0 LTX files
	logPath string
	seen    map[string]int64 // level-0 file name: size
}

// startLitestream replicates db to a file replica under dir, syncing every
// interval, and waits until the replica holds the database as it is.
func startLitestream(ctx context.Context, bin, dir, db string, interval time.Duration) (*litestream, error) {
	replica := filepath.Join(dir, "replica")
	config := fmt.Sprintf("dbs:\n  - path: %s\n    monitor-interval: %s\n    replica:\n      type: file\n      path: %s\n      sync-interval: %s\n",
		db, interval, replica, interval)
	cfgPath := filepath.Join(dir, "litestream.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	l := &litestream{level0: filepath.Join(replica, "ltx", "0"), logPath: filepath.Join(dir, "litestream.log"), seen: map[string]int64{}}
	logf, err := os.Create(l.logPath)
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
	entries, err := os.ReadDir(l.level0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var top uint64
	for _, e := range entries {
		name := e.Name()
		lo, hi, ok := strings.Cut(strings.TrimSuffix(name, ".ltx"), "-")
		if !ok || !strings.HasSuffix(name, ".ltx") {
			continue
		}
		if _, err := strconv.ParseUint(lo, 16, 64); err != nil {
			continue
		}
		txid, err := strconv.ParseUint(hi, 16, 64)
		if err != nil {
			continue
		}
		if info, err := e.Info(); err == nil {
			l.seen[name] = info.Size()
		}
		top = max(top, txid)
	}
	return top, nil
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
		hi, _ := strconv.ParseUint(strings.TrimSuffix(name[strings.IndexByte(name, '-')+1:], ".ltx"), 16, 64)
		if hi > after {
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

// fastForwardLitestream runs the fastforward workload's writes on a plain
// file in WAL mode (synchronous=NORMAL) replicated by Litestream to a file
// replica: after every commit when cfg.PushEach (a sync every 10 ms, and
// the workload waits for each commit's file), else as one burst at
// Litestream's default one-second sync interval. Its figure is what a
// replica that was current before the writes reads to catch up: every
// level-0 LTX file written since, with one request each. Commits that
// share a sync share a file, which can only favour Litestream.
func fastForwardLitestream(ctx context.Context, bin string, cfg FastForwardConfig) (Figures, error) {
	dir := filepath.Join(cfg.Dir, "litestream")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Figures{}, err
	}
	path := filepath.Join(dir, "ff.sqlite")
	db, err := sql.Open("sqlite3", "file:"+path+"?_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=busy_timeout(10000)")
	if err != nil {
		return Figures{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := referenceBodies(db, cfg.Rows, cfg.Compressible); err != nil {
		return Figures{}, err
	}
	interval := time.Second
	if cfg.PushEach {
		interval = 10 * time.Millisecond
	}
	l, err := startLitestream(ctx, bin, dir, path, interval)
	if err != nil {
		return Figures{}, err
	}
	defer l.stop()
	base, err := l.scan()
	if err != nil {
		return Figures{}, err
	}
	top := base
	if _, err := fastForwardWrites(ctx, db, cfg, func() (err error) {
		if cfg.PushEach {
			top, err = l.waitPast(ctx, top)
		}
		return err
	}); err != nil {
		return Figures{}, err
	}
	if !cfg.PushEach {
		if _, err := l.waitQuiet(ctx, base, 3*interval/2); err != nil {
			return Figures{}, err
		}
	}
	// Litestream's catch-up time is not measured (its follower is not
	// run), only what the follower would read.
	f := l.since(base)
	f.Ops = cfg.Commits
	return f, nil
}
