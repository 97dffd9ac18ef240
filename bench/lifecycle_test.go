package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/remote"
)

// TestLifecycle runs the lifecycle workload at a small size and checks its
// rows: each measured, each with its baseline, the remote smaller after
// each collection, and Litestream compared or a note saying why not.
func TestLifecycle(t *testing.T) {
	cfg := LifecycleConfig{Dir: t.TempDir(), Rows: 3000, Commits: 100, Window: 10,
		Remote: RemoteConfig{Latency: remote.LatencyOptions{FirstByte: time.Millisecond, BytesPerSecond: 1e9}}}
	results, err := RunLifecycle(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", Table(results...))
	want := []string{"remote-before-gc", "remote-after-gc-window-10", "remote-after-gc", "gc-window-10", "gc",
		"cold-open-before-gc", "cold-scan-before-gc", "cold-open", "cold-scan"}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d", len(results), len(want))
	}
	for i, r := range results {
		if r.Workload != "lifecycle/"+want[i] {
			t.Errorf("result %d is %s, want lifecycle/%s", i, r.Workload, want[i])
		}
		if r.Cambium.Ops == 0 || r.Cambium.Bytes == 0 || len(r.Comparisons) == 0 {
			t.Errorf("%s: not measured: %+v", r.Workload, r)
			continue
		}
		base := r.Comparisons[0]
		if base.Figures.Bytes == 0 || !(base.Ratio > 0) {
			t.Errorf("%s vs %s: baseline not measured: %+v", r.Workload, base.Baseline, base)
		}
		stored := strings.HasPrefix(want[i], "remote-")
		if stored != (r.Cambium.Objects > 0) {
			t.Errorf("%s: %d objects stored", r.Workload, r.Cambium.Objects)
		}
		if strings.HasPrefix(want[i], "cold-") && (r.Cambium.Requests == 0 || base.Metric != "requests") {
			t.Errorf("%s: %d requests, compared on %s", r.Workload, r.Cambium.Requests, base.Metric)
		}
	}
	before, window, after := results[0].Cambium, results[1].Cambium, results[2].Cambium
	// Bytes may grow in the windowed collection, which writes a compacted
	// copy and keeps what the window's oldest version reads.
	if !(after.Bytes < before.Bytes && after.Objects < window.Objects && window.Objects < before.Objects) {
		t.Errorf("remote before the collections %+v, after the windowed one %+v, after the last %+v", before, window, after)
	}
	litestream := len(results[0].Comparisons) == 2 && len(results[2].Comparisons) == 2
	for _, i := range []int{0, 2} {
		if !litestream && !strings.Contains(strings.Join(results[i].Notes, " "), "Litestream") {
			t.Errorf("%s: neither a Litestream baseline nor a note: %+v", results[i].Workload, results[i])
		}
	}
	if litestream && results[2].Comparisons[1].Figures.Objects == 0 {
		t.Errorf("Litestream's replica after compaction: %+v", results[2].Comparisons[1].Figures)
	}
}
