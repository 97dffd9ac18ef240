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
	// Bytes and Requests are what moved through the object store, for
	// replication workloads.
	Bytes    int64 `json:"bytes,omitempty"`
	Requests int64 `json:"requests,omitempty"`
	// Memory is bytes of memory held, for workloads that measure it.
	Memory int64 `json:"memory_bytes,omitempty"`
}

func figures(ops int, d time.Duration) Figures {
	return Figures{Ops: ops, Elapsed: d, PerSec: float64(ops) / d.Seconds()}
}

// Comparison is Cambium against one baseline: Ratio is Cambium's rate over
// the baseline's (above 1: Cambium is faster).
// For byte metrics Ratio is the baseline's bytes over Cambium's (above 1:
// Cambium moves fewer).
type Comparison struct {
	Baseline string  `json:"baseline"`
	Metric   string  `json:"metric"` // "per_sec" or "bytes"
	Figures  Figures `json:"figures"`
	Ratio    float64 `json:"ratio"`
	Target   float64 `json:"target"` // the ratio DESIGN.md asks for; 0: none
}

// Result is one workload's outcome.
type Result struct {
	Workload    string       `json:"workload"`
	Cambium     Figures      `json:"cambium"`
	Comparisons []Comparison `json:"comparisons"`
	// Notes say what was not measured and why (a baseline that could not
	// run), or how to read a figure.
	Notes []string `json:"notes,omitempty"`
}

func (r *Result) compare(name string, base Figures, target float64) {
	r.Comparisons = append(r.Comparisons, Comparison{Baseline: name, Metric: "per_sec", Figures: base, Ratio: r.Cambium.PerSec / base.PerSec, Target: target})
}

func (r *Result) compareBytes(name string, base Figures, target float64) {
	r.Comparisons = append(r.Comparisons, Comparison{Baseline: name, Metric: "bytes", Figures: base, Ratio: float64(base.Bytes) / float64(max(r.Cambium.Bytes, 1)), Target: target})
}

// Table renders results as an aligned text table.
func Table(results ...Result) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "workload\tcambium\tbaseline\tbaseline figure\tratio\ttarget")
	for _, r := range results {
		if len(r.Comparisons) == 0 {
			fmt.Fprintf(w, "%s\t%s\tno baseline\t\t\t\n", r.Workload, r.Cambium.summary())
		}
		for _, c := range r.Comparisons {
			if c.Metric == "bytes" {
				fmt.Fprintf(w, "%s\t%s in %d req, %s\t%s\t%s in %d req, %s\t%.1fx fewer bytes\t%s\n", r.Workload,
					humanBytes(r.Cambium.Bytes), r.Cambium.Requests, elapsed(r.Cambium.Elapsed), c.Baseline,
					humanBytes(c.Figures.Bytes), c.Figures.Requests, elapsed(c.Figures.Elapsed), c.Ratio, targetText(c.Target))
				continue
			}
			fmt.Fprintf(w, "%s\t%.0f/s\t%s\t%.0f/s\t%.2fx\t%s\n", r.Workload, r.Cambium.PerSec, c.Baseline, c.Figures.PerSec, c.Ratio, targetText(c.Target))
		}
	}
	w.Flush()
	for _, r := range results {
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "note: %s: %s\n", r.Workload, n)
		}
	}
	return b.String()
}

// summary is the figure that matters of a result without a baseline.
func (f Figures) summary() string {
	switch {
	case f.Memory != 0:
		return humanBytes(f.Memory) + " held"
	case f.Bytes != 0:
		return fmt.Sprintf("%s in %d req, %s", humanBytes(f.Bytes), f.Requests, elapsed(f.Elapsed))
	case f.Requests != 0:
		return fmt.Sprintf("%.0f/s, %d req", f.PerSec, f.Requests)
	}
	return fmt.Sprintf("%.0f/s", f.PerSec)
}

// targetText is a comparison's target ratio, or "none" for 0 (a
// comparison that informs rather than tests a goal).
func targetText(t float64) string {
	if t > 0 {
		return fmt.Sprintf(">=%.1fx", t)
	}
	return "none"
}

// elapsed formats a duration, or "time not measured" for none.
func elapsed(d time.Duration) string {
	if d == 0 {
		return "time not measured"
	}
	return d.Round(time.Millisecond).String()
}

// humanBytes writes a byte count in decimal units (1 KB is 1,000 bytes),
// as the table and the charts show it.
func humanBytes(n int64) string {
	v := float64(n)
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.1f GB", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.1f MB", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f KB", v/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// openCambium opens volume name in data directory dir.
func openCambium(dir, name, params string) (*sql.DB, error) {
	return sql.Open("sqlite3", fmt.Sprintf("file:%s?vfs=cambium&dir=%s%s", name, url.QueryEscape(dir), params))
}

// openFile opens a plain SQLite file in dir with the driver's default VFS.
func openFile(dir, name, params string) (*sql.DB, error) {
	return sql.Open("sqlite3", "file:"+filepath.Join(dir, name)+"?"+strings.TrimPrefix(params, "&"))
}
