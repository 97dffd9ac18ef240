package bench

import (
	"context"
	"os"
	"strings"
	"testing"
)

// processWorkerEnv makes this test binary a worker of the processes
// workload (TestProcesses_Worker) instead of running tests.
const processWorkerEnv = "CAMBIUM_BENCH_PROCESS_WORKER"

// TestProcesses_Worker is the worker processes of TestProcesses.
func TestProcesses_Worker(t *testing.T) {
	if os.Getenv(processWorkerEnv) == "" {
		t.Skip("a worker process of TestProcesses")
	}
	if err := ServeProcessWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// TestProcesses runs the processes workload at small sizes with this test
// binary as its workers, and checks that each part was measured: the
// ratios inside their spreads, the joined process's reads answered by its
// cache, each handover timed (the workload itself fails when a worker
// opened as the wrong role, or a handover lost a commit).
func TestProcesses(t *testing.T) {
	cfg := ProcessesConfig{
		Dir:    t.TempDir(),
		Worker: []string{os.Args[0], "-test.run=^TestProcesses_Worker$", "-test.count=1"},
		Env:    []string{processWorkerEnv + "=1"},
		Rows:   1000, Reads: 2000, Transactions: 50, WriteRows: 500, Rounds: 3, Handovers: 2,
		Profile: t.TempDir(),
	}
	rs, err := RunProcesses(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Result{}
	for _, r := range rs {
		got[r.Workload] = r
	}
	for _, name := range []string{"processes/reads", "processes/writes"} {
		r, ok := got[name]
		if !ok {
			t.Fatalf("no %s: %+v", name, rs)
		}
		c := r.Comparisons[0]
		if r.Cambium.Ops == 0 || c.Figures.Ops != r.Cambium.Ops || !(c.RatioMin > 0 && c.RatioMin <= c.Ratio && c.Ratio <= c.RatioMax) || c.Target == 0 {
			t.Fatalf("%s: %+v", name, r)
		}
	}
	// The table fits in the joined process's cache after its scan.
	if n := got["processes/reads"].Notes; len(n) != 2 || !strings.HasSuffix(n[1], " 0 of them from the owner (not in its cache)") {
		t.Errorf("reads in the joined process asked the owner: %q", n)
	}
	for _, name := range []string{"processes/handover-kill", "processes/handover-exit"} {
		f := got[name].Cambium
		if !(f.LatencyMin > 0 && f.LatencyMin <= f.Latency && f.Latency <= f.LatencyMax) || len(got[name].Notes) == 0 {
			t.Fatalf("%s: %+v", name, got[name])
		}
	}
	for _, p := range []string{"reads-joined-joined", "reads-joined-owner", "reads-owner-owner", "writes-cambium-joined", "writes-cambium-owner"} {
		if fi, err := os.Stat(cfg.Profile + "/" + p + ".pprof"); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", p, err)
		}
	}
	t.Logf("\n%s", Table(rs...))
}
