package bench

import (
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Chart geometry, in pixels. Each comparison is one row: a label line, then
// Cambium's bar above the baseline's.
const (
	chartWidth  = 900
	chartMargin = 16
	chartTop    = 76 // below the title and the legend
	rowHeight   = 62
	barHeight   = 14
	barMaxWidth = 680 // leaves room for the value printed at the bar end
)

const (
	colourCambium  = "#2b6cb0"
	colourBaseline = "#a0aec0"
	colourMet      = "#2f855a"
	colourMissed   = "#c53030"
	colourMuted    = "#718096"
	colourText     = "#1a202c"
)

// Charts renders results as one SVG document per workload family, keyed by
// the family: the part of the workload name before the first "/" ("commit"
// for "commit/full"). A chart is a horizontal grouped bar chart with one
// row per comparison, Cambium's bar above the baseline's, on the
// comparison's metric: ops/s (longer is better), or bytes moved or stored,
// or requests (shorter is better). Units differ between rows, so each row is scaled to the larger
// of its two values and prints the values themselves at the bar ends. The
// ratio is printed against its target, green when met and red otherwise. A
// comparison whose baseline was not measured is a note instead of bars.
func Charts(results []Result) map[string][]byte {
	families := map[string][]Result{}
	for _, r := range results {
		f := family(r.Workload)
		families[f] = append(families[f], r)
	}
	charts := make(map[string][]byte, len(families))
	for f, rs := range families {
		charts[f] = chart(f, rs)
	}
	return charts
}

// WriteCharts writes Charts(results) into dir, creating it if needed, as
// one <family>.svg file per family, and returns the paths written, sorted.
func WriteCharts(dir string, results []Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create chart directory: %w", err)
	}
	var paths []string
	for f, doc := range Charts(results) {
		path := filepath.Join(dir, f+".svg")
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			return nil, fmt.Errorf("write chart %s: %w", f, err)
		}
		paths = append(paths, path)
	}
	slices.Sort(paths)
	return paths, nil
}

// family is the chart a workload belongs to. It names a file, so it is
// never empty.
func family(workload string) string {
	f, _, _ := strings.Cut(workload, "/")
	if f == "" {
		return "other"
	}
	return f
}

func chart(name string, results []Result) []byte {
	rows := 0
	for _, r := range results {
		rows += len(r.Comparisons)
	}
	height := chartTop + max(rows, 1)*rowHeight
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(name))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	fmt.Fprintf(&b, `<text x="%d" y="30" font-size="18" font-weight="bold" fill="%s">%s</text>`+"\n", chartMargin, colourText, esc(name))
	legend(&b, chartMargin, 44, colourCambium, "Cambium")
	legend(&b, chartMargin+100, 44, colourBaseline, "baseline")
	fmt.Fprintf(&b, `<text x="%d" y="54" font-size="11" fill="%s">each row pair is scaled to its larger value</text>`+"\n", chartMargin+210, colourMuted)
	y := chartTop
	if rows == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-style="italic" fill="%s">no comparisons</text>`+"\n", chartMargin, y+14, colourMuted)
	}
	for i := range results {
		for _, c := range results[i].Comparisons {
			row(&b, results[i], c, y)
			y += rowHeight
		}
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func legend(b *strings.Builder, x, y int, colour, label string) {
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", x, y, colour)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="12" fill="%s">%s</text>`+"\n", x+16, y+10, colourText, esc(label))
}

// row draws comparison c of result r with its top edge at y.
func row(b *strings.Builder, r Result, c Comparison, y int) {
	metric := "ops/s, longer is better"
	switch {
	case c.Metric == "bytes" && r.Cambium.Objects != 0:
		metric = "bytes stored, shorter is better"
	case c.Metric == "bytes":
		metric = "bytes moved, shorter is better"
	case c.Metric == "requests":
		metric = "requests, shorter is better"
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" fill="%s">%s vs %s <tspan fill="%s">(%s)</tspan></text>`+"\n",
		chartMargin, y+14, colourText, esc(r.Workload), esc(c.Baseline), colourMuted, metric)
	if !measured(c.Figures, c.Metric) {
		fmt.Fprintf(b, `<text x="%d" y="%d" font-size="12" font-style="italic" fill="%s">baseline not measured</text>`+"\n", chartMargin, y+36, colourMuted)
		return
	}
	ratio, colour := ratioText(c)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" font-weight="bold" text-anchor="end" fill="%s">%s</text>`+"\n",
		chartWidth-chartMargin, y+14, colour, esc(ratio))
	cambium, baseline := metricValue(r.Cambium, c.Metric), metricValue(c.Figures, c.Metric)
	scale := max(cambium, baseline)
	bar(b, y+22, cambium, scale, "cambium", colourCambium, valueText(r.Cambium, c.Metric))
	bar(b, y+40, baseline, scale, "baseline", colourBaseline, valueText(c.Figures, c.Metric))
}

// bar draws a bar of length v on a scale where scale fills barMaxWidth; v
// and scale are finite and non-negative.
func bar(b *strings.Builder, y int, v, scale float64, class, colour, text string) {
	w := 0.0
	if scale > 0 {
		w = v / scale * barMaxWidth
	}
	fmt.Fprintf(b, `<rect class="bar %s" x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", class, chartMargin, y, w, barHeight, colour)
	fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="11" fill="%s">%s</text>`+"\n", chartMargin+w+6, y+11, colourText, esc(text))
}

// metricValue is f on metric, with NaN, infinities and negatives as 0 so
// that no coordinate derived from it is invalid.
func metricValue(f Figures, metric string) float64 {
	v := f.PerSec
	switch metric {
	case "bytes":
		v = float64(f.Bytes)
	case "requests":
		v = float64(f.Requests)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}

// measured reports whether a baseline's figures hold a value for metric; a
// skipped baseline leaves them zero.
func measured(f Figures, metric string) bool {
	return metricValue(f, metric) > 0 || metric == "bytes" && f.Requests > 0
}

func valueText(f Figures, metric string) string {
	if metric != "per_sec" {
		s := humanBytes(f.Bytes)
		if f.Objects != 0 {
			s += ", " + groupDigits(f.Objects) + " objects"
		} else if f.Requests != 0 {
			s += ", " + groupDigits(f.Requests) + " req"
		}
		return s
	}
	v := f.PerSec
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case math.Abs(v) >= 100 && math.Abs(v) < 1e15:
		return groupDigits(int64(math.Round(v))) + "/s"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + "/s"
}

func ratioText(c Comparison) (text, colour string) {
	target := "target >=" + targetRatio(c.Target) + "x"
	if !(c.Target > 0) {
		target = "no target"
	}
	if math.IsNaN(c.Ratio) || math.IsInf(c.Ratio, 0) {
		return "ratio n/a (" + target + ")", colourMuted
	}
	colour = colourMissed
	if !(c.Target > 0) {
		colour = colourMuted
	} else if c.Ratio >= c.Target {
		colour = colourMet
	}
	return strconv.FormatFloat(c.Ratio, 'f', 2, 64) + "x (" + target + ")", colour
}

// groupDigits writes n with a comma between groups of three digits.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	sign := ""
	if n < 0 {
		sign, s = "-", s[1:]
	}
	var b strings.Builder
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return sign + b.String()
}

// esc escapes s for use as XML text or a quoted attribute value.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}
