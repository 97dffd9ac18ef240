package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBench runs cambium bench --quick, every workload, as the issue's
// check does, and reads its JSON and charts: each workload family present,
// each result with Cambium's figures and, for each baseline, the
// baseline's figures and a ratio.
func TestBench(t *testing.T) {
	dir := t.TempDir()
	path, charts := filepath.Join(dir, "bench.json"), filepath.Join(dir, "charts")
	start := time.Now()
	r := cli(t, nil, "bench", "--quick", "--json", path, "--svg", charts)
	if r.code != 0 {
		t.Fatal(r)
	}
	t.Logf("cambium bench --quick took %s", time.Since(start).Round(time.Second))
	for _, w := range []string{"pointread", "commit/normal", "commit/full", "fastforward/", "coldopen/", "lifecycle/", "tenants/", "budget/", "processes/", "ratio"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("bench table lacks %q:\n%s", w, r.stdout)
		}
	}
	var report struct {
		Date    string
		Command string
		Results []struct {
			Workload    string
			Cambium     struct{ Ops int }
			Comparisons []struct {
				Baseline string
				Figures  struct{ Ops int }
				Ratio    float64
			}
			Notes []string
		}
	}
	if err := json.Unmarshal(readFile(t, path), &report); err != nil || report.Date == "" || !strings.Contains(report.Command, "--quick") {
		t.Fatalf("bench --json: %v %+v", err, report)
	}
	families := map[string]bool{}
	litestream := false
	for _, res := range report.Results {
		family, _, _ := strings.Cut(res.Workload, "/")
		families[family] = true
		if res.Cambium.Ops == 0 && len(res.Notes) == 0 {
			t.Errorf("%s: no Cambium figures, and no note saying why", res.Workload)
		}
		if len(res.Comparisons) == 0 && len(res.Notes) == 0 {
			t.Errorf("%s: neither a baseline nor a note saying why not", res.Workload)
		}
		for _, c := range res.Comparisons {
			if c.Figures.Ops == 0 || !(c.Ratio > 0) {
				t.Errorf("%s vs %s: figures %+v, ratio %v", res.Workload, c.Baseline, c.Figures, c.Ratio)
			}
			litestream = litestream || strings.HasPrefix(c.Baseline, "Litestream")
		}
	}
	for _, f := range []string{"pointread", "commit", "fastforward", "coldopen", "lifecycle", "tenants", "budget", "processes"} {
		if !families[f] {
			t.Errorf("bench --json has no %s results", f)
		}
		if _, err := os.Stat(filepath.Join(charts, f+".svg")); err != nil {
			t.Errorf("no chart for %s: %v", f, err)
		}
	}
	if !litestream {
		t.Errorf("no Litestream baseline in fastforward (install-deps installs it):\n%s", r.stdout)
	}
	var results []struct{ Workload string }
	out := ok(t, "--json", "bench", "--quick", "--only", "pointread")
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 || results[0].Workload != "pointread" {
		t.Fatalf("cambium --json bench: %v\n%s", err, out)
	}
}
