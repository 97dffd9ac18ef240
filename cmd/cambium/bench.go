package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cambiumdb/cambium/bench"
	"github.com/cambiumdb/cambium/extension"
	"github.com/cambiumdb/cambium/remote"
)

// benchOptions are the flags of cambium bench that workloads read.
type benchOptions struct {
	quick         bool
	remote        string                // the replication workloads' store URL ("": a scratch directory)
	latency       remote.LatencyOptions // zero: no emulation
	coldOpenSize  int64                 // bytes of coldopen's large database
	budgetSize    int64                 // bytes of the budget workload's database
	budget        int64                 // its bounded replica's cache_budget
	tenantsBudget int64                 // the tenants' data directory's cache_budget (0: none)
	tenants       int
	noLitestream  bool
	extension     string // libcambium.so for the loadable workload
	profile       string // the processes workload's profile directory
}

// replication is where the replication workloads replicate.
func (o benchOptions) replication() bench.RemoteConfig {
	return bench.RemoteConfig{URL: o.remote, Latency: o.latency, Disabled: o.latency == (remote.LatencyOptions{})}
}

// workload is one of package bench's workloads bound to the options: the
// reference configuration, or with --quick a small one.
type workload struct {
	name string
	run  func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error)
}

// workloads lists what cambium bench runs, in order. Each entry only binds
// options to a bench.Run function.
var workloads = []workload{
	{"pointread", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		cfg := bench.PointReadConfig{Dir: dir}
		if o.quick {
			cfg.Rows, cfg.Queries = 2000, 5000
		}
		r, err := bench.RunPointRead(ctx, cfg)
		return []bench.Result{r}, err
	}},
	{"commit", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		cfg := bench.CommitConfig{Dir: dir}
		if o.quick {
			cfg.Transactions, cfg.Rows = 100, 1000
		}
		return bench.RunCommit(ctx, cfg)
	}},
	{"fastforward", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		// W1: a push after every commit, random rows, and again with
		// compressible rows; W2: one push of a burst of commits to a few
		// hot rows.
		var out []bench.Result
		for i, cfg := range []bench.FastForwardConfig{{PushEach: true}, {PushEach: true, Compressible: true}, {HotRows: 100}} {
			cfg.Dir, cfg.Remote, cfg.NoLitestream = filepath.Join(dir, strconv.Itoa(i)), o.replication(), o.noLitestream
			if o.quick {
				cfg.Rows, cfg.Commits = 3000, 100
			}
			rs, err := bench.RunFastForward(ctx, cfg)
			if err != nil {
				return out, err
			}
			out = append(out, rs...)
		}
		return out, nil
	}},
	{"coldopen", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		// W3 and W3b on the reference database, then the open of a large
		// one.
		cfg := bench.ColdOpenConfig{Dir: filepath.Join(dir, "ref"), Remote: o.replication()}
		if o.quick {
			cfg.Rows, cfg.Reads = 3000, 50
		}
		out, err := bench.RunColdOpen(ctx, cfg)
		if err != nil || o.coldOpenSize == 0 {
			return out, err
		}
		large := bench.ColdOpenConfig{Dir: filepath.Join(dir, "large"), Size: o.coldOpenSize, OpenOnly: true, Remote: o.replication()}
		rs, err := bench.RunColdOpen(ctx, large)
		return append(out, rs...), err
	}},
	{"lifecycle", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		// Issue 14: 10,000 small commits pushed one by one, then garbage
		// collection with a window and without one.
		cfg := bench.LifecycleConfig{Dir: dir, Remote: o.replication(), NoLitestream: o.noLitestream}
		if o.quick {
			cfg.Rows, cfg.Commits = 3000, 200
		}
		return bench.RunLifecycle(ctx, cfg)
	}},
	{"loadable", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		// Issue 16: libcambium.so in the stock sqlite3 shell and Debian's
		// python3.
		cfg := bench.LoadableConfig{Dir: dir, Lib: o.extension}
		if o.quick {
			cfg.Transactions, cfg.Rows, cfg.Reads, cfg.Opens, cfg.Rounds = 300, 5000, 5000, 2, 3
		}
		return bench.RunLoadable(ctx, cfg)
	}},
	{"processes", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		// Issue 15: processes that joined the owner of a data directory,
		// each a new process of this binary (the hidden bench-worker).
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg := bench.ProcessesConfig{Dir: dir, Worker: []string{self, "bench-worker"}, Profile: o.profile}
		if o.quick {
			cfg.Rows, cfg.Reads, cfg.Transactions, cfg.WriteRows, cfg.Rounds, cfg.Handovers = 2000, 5000, 100, 1000, 3, 2
		}
		return bench.RunProcesses(ctx, cfg)
	}},
	{"budget", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		// Issue 20: a cold replica of a large volume within a disk
		// budget, against an unbounded one.
		cfg := bench.BudgetConfig{Dir: dir, Size: o.budgetSize, Budget: o.budget, Remote: o.replication()}
		if o.quick {
			cfg.Reads = 2000
		}
		rs, _, _, err := bench.RunBudget(ctx, cfg)
		return rs, err
	}},
	{"tenants", func(ctx context.Context, dir string, o benchOptions) ([]bench.Result, error) {
		return bench.RunTenants(ctx, bench.TenantsConfig{Dir: dir, Volumes: o.tenants, Remote: o.replication(), CacheBudget: o.tenantsBudget})
	}},
}

func benchCommand(g *globals) *command {
	var (
		o                        benchOptions
		jsonPath, svgDir, only   string
		size, latency, bandwidth string
		budgetSize, budget       string
		tenantsBudget            string
		tenants                  int
	)
	return &command{
		name:    "bench",
		summary: "run the benchmark workloads against their baselines",
		doc: `Runs the workloads of the bench package, each against its baselines measured in
the same run, and prints a table of figures and ratios (above 1: Cambium is
faster, or moves fewer bytes). The reference sizes of BENCHMARKS.md take tens
of minutes; --quick runs every workload at small sizes in a few minutes, which
checks the harness rather than measures.

Workloads:
  pointread    indexed point queries on a warm database (W6); baseline: the
               same driver on a plain file
  commit       small write transactions (W5) at synchronous=NORMAL and FULL;
               baselines: a plain file in WAL+NORMAL and rollback journal+FULL
  fastforward  a replica catching up after 1,000 small commits pushed one by
               one (W1, random and compressible rows) or in one burst to 100
               hot rows (W2); baselines: a full copy, and Litestream v0.5.18
               replicating the same writes to a file replica (installed with
               go install when missing; a note says when it cannot be)
  coldopen     a replica with an empty data directory: open and first query,
               200 random point reads, a full scan (W3, W3b, on the 51 MB
               reference database), and the open and one query of a large
               database (--coldopen-size); baseline: a full download
  lifecycle    10,000 commits of 3 random rows pushed one by one, then garbage
               collection keeping the last 1,000 commits restorable, then
               the newest version only: what the remote holds, each
               collection's time, a cold open and full scan before and
               after; baselines: a fresh copy of the newest version pushed
               once, and Litestream v0.5.18 replicating the same writes
               (default settings, then snapshots and retention every second)
  loadable     libcambium.so (--extension) in the stock sqlite3 shell and in
               Debian's /usr/bin/python3, each process timed whole: 3,000
               one-row autocommit INSERTs at synchronous=NORMAL and FULL,
               200,000 indexed point SELECTs, and 10 processes each running
               one statement on an existing volume; baselines: the same
               program on a plain file (WAL+NORMAL, rollback journal+FULL);
               median of 5 rounds with the spread of the per-round ratio
  processes    several processes on one data directory (issue 15), each a
               new process of this binary: 200,000 point SELECTs by id in a
               process that joined the owner, against the same in the owner;
               1,000 small write transactions at synchronous=NORMAL in the
               joined process, against a plain file in WAL+NORMAL; the time
               from the owner's SIGKILL, or its clean exit, to the joined
               process's next commit (5 of each); median of 5 rounds with
               the spread of the per-round ratio (--processes-profile: CPU
               profiles of the first round)
  budget       a cold replica of a large database (--budget-size) within a
               disk budget (--budget, default 64MiB): 20,000 Zipf-distributed
               point reads by id, then a full scan; hit rate, requests, bytes
               and the data directory's size; baseline: an unbounded replica
               doing the same
  tenants      many databases in one process and one remote (W7): create and
               write, push, open and query each; time per database and the
               memory each keeps; baseline: plain files

The replication workloads use an object store in a scratch directory, or
--remote, behind emulated latency (--latency, --bandwidth).`,
		minArgs: 0, maxArgs: 0,
		noJSON: true,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&o.quick, "quick", false, "every workload at small sizes, in a few minutes")
			fs.StringVar(&jsonPath, "json", "", "also write the results as JSON to `FILE`")
			fs.StringVar(&svgDir, "svg", "", "also write an SVG chart per workload into `DIR`")
			fs.StringVar(&only, "only", "", "run only the workloads `NAMES` (comma-separated)")
			fs.StringVar(&size, "coldopen-size", "", "`SIZE` of coldopen's large database (default 1GiB, 8MiB with --quick; 0 skips it)")
			fs.StringVar(&budgetSize, "budget-size", "", "`SIZE` of the budget workload's database (default 1GiB, 32MiB with --quick)")
			fs.StringVar(&budget, "budget", "", "the budget workload's cache_budget `SIZE` (default 64MiB, 4MiB with --quick)")
			fs.StringVar(&tenantsBudget, "tenants-budget", "", "run tenants within a cache_budget of `SIZE` (default none)")
			fs.IntVar(&tenants, "tenants", 0, "`N` databases for tenants (default 10000, 200 with --quick)")
			fs.StringVar(&latency, "latency", "", "emulated object-store first-byte `DURATION` (default 20ms, 1ms with --quick; 0 turns emulation off)")
			fs.StringVar(&bandwidth, "bandwidth", "", "emulated per-request `BYTES/s`, e.g. 100MB (default 100MB, 1GB with --quick)")
			fs.StringVar(&o.extension, "extension", "build/libcambium.so", "the loadable extension `FILE` for the loadable workload (make extension)")
			fs.StringVar(&o.profile, "processes-profile", "", "write CPU profiles of the processes workload's first round into `DIR`")
			fs.BoolVar(&o.noLitestream, "no-litestream", false, "leave out the Litestream baseline")
		},
		run: func(ctx context.Context, _ []string) error {
			o.remote = g.remote
			var err error
			if o.coldOpenSize, err = parseSize("--coldopen-size", size, pick[int64](o.quick, 8<<20, 1<<30), true); err != nil {
				return err
			}
			if o.budgetSize, err = parseSize("--budget-size", budgetSize, pick[int64](o.quick, 32<<20, 1<<30), false); err != nil {
				return err
			}
			if o.budget, err = parseSize("--budget", budget, pick[int64](o.quick, 4<<20, 64<<20), false); err != nil {
				return err
			}
			if o.tenantsBudget, err = parseSize("--tenants-budget", tenantsBudget, 0, true); err != nil {
				return err
			}
			if o.tenants = tenants; o.tenants == 0 {
				o.tenants = pick(o.quick, 200, 10000)
			} else if o.tenants < 0 {
				return usagef("--tenants %d: want a positive number", tenants)
			}
			if o.latency, err = parseLatency(latency, bandwidth, o.quick); err != nil {
				return err
			}
			run, err := selectWorkloads(only)
			if err != nil {
				return err
			}
			return runBench(ctx, g, o, run, jsonPath, svgDir)
		},
	}
}

func pick[T any](quick bool, small, full T) T {
	if quick {
		return small
	}
	return full
}

// parseSize reads a size flag the way every size setting is read
// (extension.ParseSize: 64MiB, 1GiB, 500MB, 4096), def when not given; 0
// only when zero is true (the flags for which 0 means none).
func parseSize(flagName, s string, def int64, zero bool) (int64, error) {
	switch {
	case s == "":
		return def, nil
	case s == "0" && zero:
		return 0, nil
	}
	n, err := extension.ParseSize(s)
	if err != nil {
		return 0, usagef("%s %q: %v", flagName, s, err)
	}
	return n, nil
}

// parseLatency reads --latency and --bandwidth into emulation options.
func parseLatency(latency, bandwidth string, quick bool) (remote.LatencyOptions, error) {
	lat := remote.LatencyOptions{FirstByte: pick(quick, time.Millisecond, 20*time.Millisecond)}
	if latency != "" {
		d, err := time.ParseDuration(latency)
		if err != nil || d < 0 {
			return lat, usagef("--latency %q: want a duration such as 20ms, or 0", latency)
		}
		lat.FirstByte = d
	}
	bw, err := parseSize("--bandwidth", bandwidth, pick[int64](quick, 1e9, 100e6), false)
	if err != nil {
		return lat, usagef("--bandwidth %q: want a rate such as 100MB (bytes a second), more than 0", bandwidth)
	}
	if lat.FirstByte == 0 {
		return remote.LatencyOptions{}, nil // emulation off
	}
	lat.BytesPerSecond = bw
	return lat, nil
}

// selectWorkloads returns the workloads --only names, or all of them.
func selectWorkloads(only string) ([]workload, error) {
	if only == "" {
		return workloads, nil
	}
	var run []workload
	for _, name := range strings.Split(only, ",") {
		found := false
		for _, w := range workloads {
			if w.name == strings.TrimSpace(name) {
				run, found = append(run, w), true
			}
		}
		if !found {
			var names []string
			for _, w := range workloads {
				names = append(names, w.name)
			}
			return nil, usagef("--only %q: no workload %q; there are: %s", only, name, strings.Join(names, ", "))
		}
	}
	return run, nil
}

func runBench(ctx context.Context, g *globals, o benchOptions, run []workload, jsonPath, svgDir string) error {
	scratch, err := os.MkdirTemp("", "cambium-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	var results []bench.Result
	for _, w := range run {
		dir, err := os.MkdirTemp(scratch, w.name+"-")
		if err != nil {
			return err
		}
		if !g.json {
			fmt.Fprintf(g.stderr, "running %s...\n", w.name)
		}
		start := time.Now()
		rs, err := w.run(ctx, dir, o)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		if !g.json {
			fmt.Fprintf(g.stderr, "  %s done in %s\n", w.name, time.Since(start).Round(time.Millisecond))
		}
		results = append(results, rs...)
		os.RemoveAll(dir)
	}
	if jsonPath != "" {
		b, err := json.MarshalIndent(benchReport{
			Date:    time.Now().UTC().Format(time.RFC3339),
			Command: strings.Join(os.Args, " "),
			Quick:   o.quick,
			Latency: latencyText(o.latency),
			Results: results,
		}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if svgDir != "" {
		paths, err := bench.WriteCharts(svgDir, results)
		if err != nil {
			return err
		}
		if !g.json {
			fmt.Fprintf(g.stderr, "charts: %s\n", strings.Join(paths, " "))
		}
	}
	return g.emit(results, func(w io.Writer) {
		fmt.Fprint(w, bench.Table(results...))
		if o.quick {
			fmt.Fprintf(w, "(--quick: small sizes, object store latency %s; the ratios are not the reference measurements)\n", latencyText(o.latency))
		}
	})
}

func latencyText(l remote.LatencyOptions) string {
	if l == (remote.LatencyOptions{}) {
		return "none"
	}
	return fmt.Sprintf("%s first byte, %d B/s per request", l.FirstByte, l.BytesPerSecond)
}

// benchReport is the JSON file that --json writes.
type benchReport struct {
	Date    string         `json:"date"`
	Command string         `json:"command"`
	Quick   bool           `json:"quick"`
	Latency string         `json:"object_store_latency"`
	Results []bench.Result `json:"results"`
}
