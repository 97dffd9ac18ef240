package bench

import (
	"context"
	"encoding/json"
	"math/rand/v2"
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

// BenchmarkCommit runs the commit workload's transactions (one UPDATE of
// a random row and one INSERT) one after another for as long as the
// benchmark asks, on Cambium and on the plain file of the same
// durability class: for profiles of a longer run than the workload's
// rounds (-cpuprofile, -benchmem).
func BenchmarkCommit(b *testing.B) {
	for _, tc := range []struct {
		name    string
		cambium bool
		pragmas []string
	}{
		{"side=cambium/sync=normal", true, []string{"PRAGMA synchronous=NORMAL"}},
		{"side=plain/sync=normal", false, []string{"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"}},
		{"side=cambium/sync=full", true, []string{"PRAGMA synchronous=FULL"}},
		{"side=plain/sync=full", false, []string{"PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			open := openFile
			if tc.cambium {
				open = openCambium
			}
			db, err := open(b.TempDir(), "commit.db", "")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			for _, p := range tc.pragmas {
				if _, err := db.Exec(p); err != nil {
					b.Fatal(err)
				}
			}
			const rows = 10000
			if err := reference(db, rows); err != nil {
				b.Fatal(err)
			}
			if _, err := db.Exec("CREATE TABLE log(id INTEGER PRIMARY KEY, item INTEGER, at INTEGER)"); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			for i := 0; b.Loop(); i++ {
				tx, err := db.Begin()
				if err != nil {
					b.Fatal(err)
				}
				id := 1 + rng.IntN(rows)
				if _, err := tx.Exec("UPDATE items SET qty = qty + 1 WHERE id = ?", id); err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec("INSERT INTO log(item, at) VALUES (?, ?)", id, i); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
