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
	"math"
	"net/url"
	"path/filepath"
	"strconv"
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
	// replication workloads; or, with Objects, what the store holds.
	Bytes    int64 `json:"bytes,omitempty"`
	Requests int64 `json:"requests,omitempty"`
	// Objects is how many objects the store holds, for workloads that
	// measure what is stored (Bytes is then their size).
	Objects int64 `json:"objects,omitempty"`
	// Memory is bytes of memory held, for workloads that measure it.
	Memory int64 `json:"memory_bytes,omitempty"`
	// Latency is the median time of one event, for workloads that time
	// each (the owner handover), LatencyMin and LatencyMax the smallest
	// and the largest.
	Latency    time.Duration `json:"latency_ns,omitempty"`
	LatencyMin time.Duration `json:"latency_min_ns,omitempty"`
	LatencyMax time.Duration `json:"latency_max_ns,omitempty"`
}

func figures(ops int, d time.Duration) Figures {
	return Figures{Ops: ops, Elapsed: d, PerSec: float64(ops) / d.Seconds()}
}

// Comparison is Cambium against one baseline: Ratio is Cambium's rate over
// the baseline's (above 1: Cambium is faster).
// For byte metrics Ratio is the baseline's bytes over Cambium's (above 1:
// Cambium moves or stores fewer), and for request metrics the baseline's
// requests over Cambium's.
type Comparison struct {
	Baseline string  `json:"baseline"`
	Metric   string  `json:"metric"` // "per_sec", "bytes" or "requests"
	Figures  Figures `json:"figures"`
	Ratio    float64 `json:"ratio"`
	// RatioMin and RatioMax are the spread of the ratio over a workload's
	// rounds, for workloads that pair Cambium's rounds with the
	// baseline's (both 0 otherwise).
	RatioMin float64 `json:"ratio_min,omitempty"`
	RatioMax float64 `json:"ratio_max,omitempty"`
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

func (r *Result) compareRequests(name string, base Figures, target float64) {
	r.Comparisons = append(r.Comparisons, Comparison{Baseline: name, Metric: "requests", Figures: base, Ratio: float64(base.Requests) / float64(max(r.Cambium.Requests, 1)), Target: target})
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
			if c.Metric != "per_sec" {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%sx fewer %s\t%s\n", r.Workload,
					r.Cambium.transfer(), c.Baseline, c.Figures.transfer(), fewerRatio(c.Ratio), c.Metric, targetText(c.Target))
				continue
			}
			fmt.Fprintf(w, "%s\t%.0f/s\t%s\t%.0f/s\t%.2fx%s\t%s\n", r.Workload, r.Cambium.PerSec, c.Baseline, c.Figures.PerSec, c.Ratio, c.spread(), targetText(c.Target))
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

// spread is " (min..max)" of a ratio measured in rounds, or "".
func (c Comparison) spread() string {
	if c.RatioMin == 0 && c.RatioMax == 0 {
		return ""
	}
	return fmt.Sprintf(" (%.2f..%.2f)", c.RatioMin, c.RatioMax)
}

// summary is the figure that matters of a result without a baseline.
func (f Figures) summary() string {
	switch {
	case f.Latency != 0:
		r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
		return fmt.Sprintf("%s (%s..%s)", r(f.Latency), r(f.LatencyMin), r(f.LatencyMax))
	case f.Memory != 0:
		return humanBytes(f.Memory) + " held"
	case f.Bytes != 0:
		return f.transfer()
	case f.Requests != 0:
		return fmt.Sprintf("%.0f/s, %d req", f.PerSec, f.Requests)
	}
	return fmt.Sprintf("%.0f/s", f.PerSec)
}

// transfer is what moved through the object store (bytes, requests,
// time), or what it holds (bytes, objects).
func (f Figures) transfer() string {
	switch {
	case f.Objects != 0:
		return fmt.Sprintf("%s in %d objects", humanBytes(f.Bytes), f.Objects)
	case f.Requests != 0 || f.Elapsed != 0:
		return fmt.Sprintf("%s in %d req, %s", humanBytes(f.Bytes), f.Requests, elapsed(f.Elapsed))
	}
	return humanBytes(f.Bytes)
}

// fewerRatio writes a ratio of bytes or requests with three significant
// digits, whole from 100 on: 0.00466 (far more than the baseline), 1.48,
// 929.
func fewerRatio(r float64) string {
	if r >= 100 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'g', 3, 64)
}

// targetText is a comparison's target ratio, or "none" for 0 (a
// comparison that informs rather than tests a goal).
func targetText(t float64) string {
	if t > 0 {
		return ">=" + targetRatio(t) + "x"
	}
	return "none"
}

// targetRatio writes a target ratio with one decimal, or two where one
// would round it (1/1.1 is 0.91, not 0.9).
func targetRatio(t float64) string {
	if r := math.Round(t * 10); math.Abs(t*10-r) < 1e-9 {
		return strconv.FormatFloat(r/10, 'f', 1, 64)
	}
	return strconv.FormatFloat(t, 'f', 2, 64)
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
