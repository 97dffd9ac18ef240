package bench

import (
	"context"
	"encoding/json"
	"os"
	"testing"
)

// TestLocal runs the local workloads at small sizes (in make test) so the
// harness itself stays working; CAMBIUM_BENCH_FULL=1 runs the reference
// sizes and CAMBIUM_BENCH_JSON=FILE writes the results. It asserts that
// every figure and ratio was measured, never a speed.
func TestLocal(t *testing.T) {
	full := os.Getenv("CAMBIUM_BENCH_FULL") != ""
	pr, cc := PointReadConfig{Dir: t.TempDir(), Rows: 2000, Queries: 5000}, CommitConfig{Dir: t.TempDir(), Transactions: 100, Rows: 1000}
	if full {
		pr, cc = PointReadConfig{Dir: t.TempDir()}, CommitConfig{Dir: t.TempDir()}
	}
	ctx := context.Background()
	read, err := RunPointRead(ctx, pr)
	if err != nil {
		t.Fatal(err)
	}
	commits, err := RunCommit(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	results := append([]Result{read}, commits...)
	for _, r := range results {
		if r.Cambium.Ops == 0 || len(r.Comparisons) == 0 {
			t.Fatalf("%s: nothing measured", r.Workload)
		}
		for _, c := range r.Comparisons {
			if c.Figures.Ops != r.Cambium.Ops || c.Ratio <= 0 {
				t.Fatalf("%s vs %s: %+v", r.Workload, c.Baseline, c)
			}
			if r.Workload != "pointread" && !(c.RatioMin > 0 && c.RatioMin <= c.Ratio && c.Ratio <= c.RatioMax) {
				t.Fatalf("%s: ratio %v outside its spread %v..%v", r.Workload, c.Ratio, c.RatioMin, c.RatioMax)
			}
		}
	}
	t.Logf("\n%s", Table(results...))
	if path := os.Getenv("CAMBIUM_BENCH_JSON"); path != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
