package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cambiumdb/cambium/bench"
	"github.com/cambiumdb/cambium/remote"
)

// workload is one of package bench's workloads, bound to its reference or
// its quick configuration; remote is the object store URL for the
// replication workloads ("" for a directory of their own).
type workload struct {
	name string
	run  func(ctx context.Context, dir string, quick bool, remote string) ([]bench.Result, error)
}

// replicationRemote is where the replication workloads replicate: with
// --quick, object-store latency is emulated at 1 ms rather than BENCHMARKS.md's
// 20 ms, so that the run takes seconds.
func replicationRemote(quick bool, url string) bench.RemoteConfig {
	rc := bench.RemoteConfig{URL: url}
	if quick {
		rc.Latency = remote.LatencyOptions{FirstByte: time.Millisecond, BytesPerSecond: 1e9}
	}
	return rc
}

// workloads lists what cambium bench runs, in order. Each entry only binds
// a configuration to a bench.Run function.
var workloads = []workload{
	{"pointread", func(ctx context.Context, dir string, quick bool, _ string) ([]bench.Result, error) {
		cfg := bench.PointReadConfig{Dir: dir}
		if quick {
			cfg.Rows, cfg.Queries = 2000, 5000
		}
		r, err := bench.RunPointRead(ctx, cfg)
		return []bench.Result{r}, err
	}},
	{"commit", func(ctx context.Context, dir string, quick bool, _ string) ([]bench.Result, error) {
		cfg := bench.CommitConfig{Dir: dir}
		if quick {
			cfg.Transactions, cfg.Rows = 100, 1000
		}
		return bench.RunCommit(ctx, cfg)
	}},
	{"fastforward", func(ctx context.Context, dir string, quick bool, url string) ([]bench.Result, error) {
		var out []bench.Result
		// W1: a push after every commit, random rows; W2: one push of a
		// burst of commits to a few hot rows.
		for i, cfg := range []bench.FastForwardConfig{{PushEach: true}, {HotRows: 100}} {
			cfg.Dir, cfg.Remote = filepath.Join(dir, fmt.Sprint(i)), replicationRemote(quick, url)
			if quick {
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
	{"coldopen", func(ctx context.Context, dir string, quick bool, url string) ([]bench.Result, error) {
		cfg := bench.ColdOpenConfig{Dir: dir, Remote: replicationRemote(quick, url)}
		if quick {
			cfg.Rows, cfg.Reads = 3000, 50
		}
		return bench.RunColdOpen(ctx, cfg)
	}},
}

func benchCommand(g *globals) *command {
	var (
		quick    bool
		jsonPath string
		only     string
	)
	return &command{
		name:    "bench",
		summary: "run the benchmark workloads against their baselines",
		doc: `Runs the workloads of the bench package, each against its baseline measured in
the same run (the same SQLite driver on a plain file), and prints a table of
rates and ratios. The reference sizes take minutes; --quick runs small ones
in seconds, which check that the harness works rather than measure.

Workloads: pointread (indexed point queries on a warm database), commit (small
write transactions at synchronous=NORMAL and FULL), fastforward (a replica
catching up after many small commits), coldopen (a replica with an empty data
directory opening a remote database: first query, point reads, a scan). The
replication workloads use an object store in a scratch directory behind
emulated latency, or --remote.`,
		minArgs: 0, maxArgs: 0,
		noJSON: true,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&quick, "quick", false, "small sizes: seconds, not minutes")
			fs.StringVar(&jsonPath, "json", "", "also write the results as JSON to `FILE`")
			fs.StringVar(&only, "only", "", "run only the workload `NAME`")
		},
		run: func(ctx context.Context, _ []string) error {
			return runBench(ctx, g, quick, jsonPath, only)
		},
	}
}

func runBench(ctx context.Context, g *globals, quick bool, jsonPath, only string) error {
	run := workloads
	if only != "" {
		run = nil
		for _, w := range workloads {
			if w.name == only {
				run = append(run, w)
			}
		}
		if run == nil {
			names := ""
			for _, w := range workloads {
				names += " " + w.name
			}
			return usagef("--only %q: no such workload; there are:%s", only, names)
		}
	}
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
		rs, err := w.run(ctx, dir, quick, g.remote)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		if !g.json {
			fmt.Fprintf(g.stderr, "  %s done in %s\n", w.name, time.Since(start).Round(time.Millisecond))
		}
		results = append(results, rs...)
	}
	if jsonPath != "" {
		b, err := json.MarshalIndent(results, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return g.emit(results, func(w io.Writer) {
		fmt.Fprint(w, bench.Table(results...))
		if quick {
			fmt.Fprintln(w, "(--quick: small sizes; the ratios are not the reference measurements)")
		}
	})
}
