package bench

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/remote"
)

// TestReplication runs the replication workloads at small sizes (in make
// test), or at reference sizes with CAMBIUM_BENCH_FULL=1, and checks that
// every figure was measured and that catching up moves less than a full
// copy. CAMBIUM_BENCH_REPL_JSON=FILE writes the results.
func TestReplication(t *testing.T) {
	full := os.Getenv("CAMBIUM_BENCH_FULL") != ""
	rc := RemoteConfig{Latency: remote.LatencyOptions{FirstByte: time.Millisecond, BytesPerSecond: 1e9}}
	ff := FastForwardConfig{Dir: t.TempDir(), Rows: 3000, Commits: 100, PushEach: true, Remote: rc}
	hot := FastForwardConfig{Dir: t.TempDir(), Rows: 3000, Commits: 100, HotRows: 100, Remote: rc}
	co := ColdOpenConfig{Dir: t.TempDir(), Rows: 3000, Reads: 50, Remote: rc}
	if full {
		ff = FastForwardConfig{Dir: t.TempDir(), PushEach: true}
		hot = FastForwardConfig{Dir: t.TempDir(), HotRows: 100}
		co = ColdOpenConfig{Dir: t.TempDir()}
	}
	ctx := context.Background()
	var results []Result
	for _, c := range []FastForwardConfig{ff, hot} {
		r, err := RunFastForward(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r...)
	}
	r, err := RunColdOpen(ctx, co)
	if err != nil {
		t.Fatal(err)
	}
	results = append(results, r...)
	for _, r := range results {
		if r.Cambium.Requests == 0 || len(r.Comparisons) == 0 || r.Comparisons[0].Figures.Bytes == 0 {
			t.Fatalf("%s: nothing measured: %+v", r.Workload, r)
		}
	}
	// Catching up by pulling metadata must move less than copying it all.
	if results[0].Cambium.Bytes >= results[0].Comparisons[0].Figures.Bytes {
		t.Fatalf("fast-forward moved %d bytes, a full copy %d", results[0].Cambium.Bytes, results[0].Comparisons[0].Figures.Bytes)
	}
	t.Logf("\n%s", Table(results...))
	if path := os.Getenv("CAMBIUM_BENCH_REPL_JSON"); path != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTenants runs the tenants workload at a small size (or 10,000
// volumes with CAMBIUM_BENCH_FULL=1) and checks that every figure was
// measured.
func TestTenants(t *testing.T) {
	cfg := TenantsConfig{Dir: t.TempDir(), Volumes: 200, Remote: RemoteConfig{Latency: remote.LatencyOptions{FirstByte: time.Millisecond, BytesPerSecond: 1e9}}}
	if os.Getenv("CAMBIUM_BENCH_FULL") != "" {
		cfg = TenantsConfig{Dir: t.TempDir()}
	}
	results, err := RunTenants(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 4 {
		t.Fatalf("%d results", len(results))
	}
	for _, r := range results {
		if r.Cambium.Ops != cfg.Volumes && cfg.Volumes != 0 {
			t.Fatalf("%s: %+v", r.Workload, r.Cambium)
		}
	}
	if results[0].Comparisons[0].Ratio <= 0 || results[2].Comparisons[0].Ratio <= 0 || results[3].Cambium.Memory == 0 {
		t.Fatalf("not measured: %+v", results)
	}
	t.Logf("\n%s", Table(results...))
}
