package bench

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestLoadable runs the loadable workload at small sizes with the library
// make extension built (build/libcambium.so), and checks that every kind
// was measured in both hosts, with the ratio inside its spread; without
// the library, that the result says how to build it.
func TestLoadable(t *testing.T) {
	cfg := LoadableConfig{Dir: t.TempDir(), Lib: "../build/libcambium.so", Transactions: 50, Rows: 500, Reads: 200, Opens: 1, Rounds: 2}
	if _, err := os.Stat(cfg.Lib); err != nil {
		rs, err := RunLoadable(context.Background(), cfg)
		if err != nil || len(rs) != 1 || len(rs[0].Notes) != 1 || !strings.Contains(rs[0].Notes[0], "make extension") {
			t.Fatalf("without a library: %v %+v", err, rs)
		}
		t.Skip("no build/libcambium.so (make extension): only the note was checked")
	}
	rs, err := RunLoadable(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	measured := map[string]bool{}
	for _, r := range rs {
		if len(r.Comparisons) == 0 {
			t.Logf("%s: %v", r.Workload, r.Notes) // a host that is missing
			continue
		}
		c := r.Comparisons[0]
		if r.Cambium.Ops == 0 || c.Figures.Ops != r.Cambium.Ops || !(c.RatioMin > 0 && c.RatioMin <= c.Ratio && c.Ratio <= c.RatioMax) {
			t.Fatalf("%s: %+v", r.Workload, r)
		}
		measured[r.Workload] = true
	}
	for _, kind := range []string{"normal", "full", "read", "open"} {
		if !measured["loadable/shell/"+kind] {
			t.Errorf("loadable/shell/%s not measured", kind)
		}
	}
	t.Logf("\n%s", Table(rs...))
}
