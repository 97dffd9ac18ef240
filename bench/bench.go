// Package bench holds Cambium's macro benchmarks: workloads as a Config and
// a Run function returning a Result. Every Result carries Cambium's
// figures, each baseline's figures measured in the same run on the same
// machine, and the ratios, so that no claim rests on a number from another
// day. Binaries (cmd/cambium bench, make bench) only bind flags and print.
//
// Databases are opened with github.com/ncruces/go-sqlite3 for Cambium (the
// cambium VFS) and for the baselines (its default VFS on a plain file), so
// that the driver is the same on both sides.
package bench

import (
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	_ "github.com/cambiumdb/cambium/extension/govfs" // the cambium VFS
	_ "github.com/ncruces/go-sqlite3/driver"
)

// Figures are one system's measurements in a workload.
type Figures struct {
	Ops     int           `json:"ops"`
	Elapsed time.Duration `json:"elapsed_ns"`
	PerSec  float64       `json:"per_sec"`
}

func figures(ops int, d time.Duration) Figures {
	return Figures{Ops: ops, Elapsed: d, PerSec: float64(ops) / d.Seconds()}
}

// Comparison is Cambium against one baseline: Ratio is Cambium's rate over
// the baseline's (above 1: Cambium is faster).
type Comparison struct {
	Baseline string  `json:"baseline"`
	Figures  Figures `json:"figures"`
	Ratio    float64 `json:"ratio"`
	Target   float64 `json:"target"` // the ratio DESIGN.md asks for
}

// Result is one workload's outcome.
type Result struct {
	Workload    string       `json:"workload"`
	Cambium     Figures      `json:"cambium"`
	Comparisons []Comparison `json:"comparisons"`
}

func (r *Result) compare(name string, base Figures, target float64) {
	r.Comparisons = append(r.Comparisons, Comparison{Baseline: name, Figures: base, Ratio: r.Cambium.PerSec / base.PerSec, Target: target})
}

// Table renders results as an aligned text table.
func Table(results ...Result) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "workload\tcambium/s\tbaseline\tbaseline/s\tratio\ttarget")
	for _, r := range results {
		for _, c := range r.Comparisons {
			fmt.Fprintf(w, "%s\t%.0f\t%s\t%.0f\t%.2fx\t>=%.1fx\n", r.Workload, r.Cambium.PerSec, c.Baseline, c.Figures.PerSec, c.Ratio, c.Target)
		}
	}
	w.Flush()
	return b.String()
}

// openCambium opens volume name in data directory dir.
func openCambium(dir, name, params string) (*sql.DB, error) {
	return sql.Open("sqlite3", fmt.Sprintf("file:%s?vfs=cambium&dir=%s%s", name, url.QueryEscape(dir), params))
}

// openFile opens a plain SQLite file in dir with the driver's default VFS.
func openFile(dir, name, params string) (*sql.DB, error) {
	return sql.Open("sqlite3", "file:"+filepath.Join(dir, name)+"?"+strings.TrimPrefix(params, "&"))
}
