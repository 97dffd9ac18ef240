package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const escapedName = `sqlite <a&b> "q"`

// chartResults has three families: pointread (two measured comparisons),
// commit (two measured and one skipped) and fastforward (one on bytes).
func chartResults() []Result {
	return []Result{
		{Workload: "pointread", Cambium: Figures{Ops: 1000, PerSec: 52000}, Comparisons: []Comparison{
			{Baseline: "sqlite (WAL, synchronous=NORMAL)", Metric: "per_sec", Figures: Figures{PerSec: 24000}, Ratio: 52000.0 / 24000, Target: 1},
			{Baseline: escapedName, Metric: "per_sec", Figures: Figures{PerSec: 65000}, Ratio: 0.8, Target: 1},
		}},
		{Workload: "commit/normal", Cambium: Figures{PerSec: 900}, Comparisons: []Comparison{
			{Baseline: "sqlite", Metric: "per_sec", Figures: Figures{PerSec: 1000}, Ratio: 0.9, Target: 0.5},
		}},
		{Workload: "commit/full", Cambium: Figures{PerSec: 300}, Comparisons: []Comparison{
			{Baseline: "sqlite", Metric: "per_sec", Figures: Figures{PerSec: 100}, Ratio: 3, Target: 0.5},
			{Baseline: "litestream", Metric: "per_sec", Ratio: math.Inf(1), Target: 1},
		}},
		{Workload: "fastforward/W1/pull", Cambium: Figures{Bytes: 12345, Requests: 7}, Comparisons: []Comparison{
			{Baseline: "full copy", Metric: "bytes", Figures: Figures{Bytes: 4_500_000, Requests: 3}, Ratio: 364, Target: 10},
		}},
	}
}

type svgElem struct {
	name string
	attr map[string]string
	text string // all character data inside, children included
}

// parseSVG decodes doc strictly, checks that it is an SVG document whose
// coordinates are all finite numbers, and returns its elements in order.
func parseSVG(t testing.TB, doc []byte) []*svgElem {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var elems, open []*svgElem
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("malformed SVG: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(elems) == 0 && (tok.Name.Local != "svg" || tok.Name.Space != "http://www.w3.org/2000/svg") {
				t.Fatalf("root element is %v, want svg in the SVG namespace", tok.Name)
			}
			e := &svgElem{name: tok.Name.Local, attr: map[string]string{}}
			for _, a := range tok.Attr {
				e.attr[a.Name.Local] = a.Value
				switch a.Name.Local {
				case "x", "y", "width", "height":
					if v, err := strconv.ParseFloat(a.Value, 64); err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
						t.Errorf("<%s %s=%q>: not a finite non-negative number", e.name, a.Name.Local, a.Value)
					}
				}
			}
			elems, open = append(elems, e), append(open, e)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			for _, e := range open {
				e.text += string(tok)
			}
		}
	}
	if len(elems) == 0 {
		t.Fatal("empty document")
	}
	return elems
}

func bars(elems []*svgElem) []*svgElem {
	var out []*svgElem
	for _, e := range elems {
		if e.name == "rect" && strings.HasPrefix(e.attr["class"], "bar ") {
			out = append(out, e)
		}
	}
	return out
}

// texts returns the text elements whose content is exactly s.
func texts(elems []*svgElem, s string) []*svgElem {
	var out []*svgElem
	for _, e := range elems {
		if e.name == "text" && e.text == s {
			out = append(out, e)
		}
	}
	return out
}

func TestCharts(t *testing.T) {
	charts := Charts(chartResults())

	t.Run("Families", func(t *testing.T) {
		var got []string
		for f, doc := range charts {
			got = append(got, f)
			if n := len(texts(parseSVG(t, doc), f)); n != 1 {
				t.Errorf("%s: %d headings naming the family, want 1", f, n)
			}
		}
		slices.Sort(got)
		if want := []string{"commit", "fastforward", "pointread"}; !slices.Equal(got, want) {
			t.Errorf("families %v, want %v", got, want)
		}
	})

	t.Run("Bars", func(t *testing.T) {
		for f, want := range map[string]int{"pointread": 4, "commit": 4, "fastforward": 2} {
			bs := bars(parseSVG(t, charts[f]))
			if len(bs) != want {
				t.Errorf("%s: %d bar rects, want %d", f, len(bs), want)
				continue
			}
			// Bars come in pairs, Cambium first, the longer one full width.
			for i := 0; i+1 < len(bs); i += 2 {
				if bs[i].attr["class"] != "bar cambium" || bs[i+1].attr["class"] != "bar baseline" {
					t.Errorf("%s: pair %d has classes %q, %q", f, i/2, bs[i].attr["class"], bs[i+1].attr["class"])
				}
				a, _ := strconv.ParseFloat(bs[i].attr["width"], 64)
				b, _ := strconv.ParseFloat(bs[i+1].attr["width"], 64)
				if max(a, b) != barMaxWidth || min(a, b) >= barMaxWidth {
					t.Errorf("%s: pair %d widths %v, %v; want the longer at %d", f, i/2, a, b, barMaxWidth)
				}
			}
		}
		bs := bars(parseSVG(t, charts["pointread"]))
		if w := bs[1].attr["width"]; w != "313.8" { // 24000/52000 of 680
			t.Errorf("pointread baseline bar width %s, want 313.8", w)
		}
	})

	t.Run("Escape", func(t *testing.T) {
		doc := charts["pointread"]
		if bytes.Contains(doc, []byte("<a&b>")) {
			t.Error("baseline name written unescaped")
		}
		if !bytes.Contains(doc, []byte("sqlite &lt;a&amp;b&gt; &#34;q&#34;")) {
			t.Error("escaped baseline name missing")
		}
		found := false
		for _, e := range parseSVG(t, doc) {
			found = found || e.name == "text" && strings.Contains(e.text, "pointread vs "+escapedName)
		}
		if !found {
			t.Errorf("no row label reads back as %q", "pointread vs "+escapedName)
		}
	})

	t.Run("SkippedBaseline", func(t *testing.T) {
		elems := parseSVG(t, charts["commit"])
		if n := len(texts(elems, "baseline not measured")); n != 1 {
			t.Errorf("%d notes, want 1", n)
		}
		for _, e := range elems {
			if e.name == "text" && strings.Contains(e.text, "litestream") && !strings.HasPrefix(e.text, "commit/full vs litestream") {
				t.Errorf("unexpected text about the skipped baseline: %q", e.text)
			}
		}
	})

	t.Run("Ratio", func(t *testing.T) {
		for f, cases := range map[string]map[string]string{
			"pointread":   {"2.17x (target >=1.0x)": colourMet, "0.80x (target >=1.0x)": colourMissed},
			"commit":      {"0.90x (target >=0.5x)": colourMet, "3.00x (target >=0.5x)": colourMet},
			"fastforward": {"364.00x (target >=10.0x)": colourMet},
		} {
			elems := parseSVG(t, charts[f])
			for text, colour := range cases {
				got := texts(elems, text)
				if len(got) != 1 {
					t.Errorf("%s: %d texts %q, want 1", f, len(got), text)
					continue
				}
				if got[0].attr["fill"] != colour {
					t.Errorf("%s: %q filled %s, want %s", f, text, got[0].attr["fill"], colour)
				}
			}
		}
	})

	t.Run("Values", func(t *testing.T) {
		// Cambium's value is printed once per comparison; commit/full's
		// skipped baseline prints none.
		for f, want := range map[string]map[string]int{
			"pointread":   {"52,000/s": 2, "24,000/s": 1, "65,000/s": 1},
			"commit":      {"900/s": 1, "1,000/s": 1, "300/s": 1, "100/s": 1},
			"fastforward": {"12.3 KB, 7 req": 1, "4.5 MB, 3 req": 1},
		} {
			elems := parseSVG(t, charts[f])
			for s, n := range want {
				if got := len(texts(elems, s)); got != n {
					t.Errorf("%s: value %q printed %d times, want %d", f, s, got, n)
				}
			}
		}
	})

	t.Run("Units", func(t *testing.T) {
		for _, c := range []struct {
			f      Figures
			metric string
			want   string
		}{
			{Figures{PerSec: 1234.4}, "per_sec", "1,234/s"},
			{Figures{PerSec: 1234567.8}, "per_sec", "1,234,568/s"},
			{Figures{PerSec: 12.34}, "per_sec", "12.3/s"},
			{Figures{PerSec: 0.5}, "per_sec", "0.5/s"},
			{Figures{PerSec: math.NaN()}, "per_sec", "n/a"},
			{Figures{Bytes: 999}, "bytes", "999 B"},
			{Figures{Bytes: 12_300}, "bytes", "12.3 KB"},
			{Figures{Bytes: 4_500_000, Requests: 1234}, "bytes", "4.5 MB, 1,234 req"},
			{Figures{Bytes: 2_000_000_000}, "bytes", "2.0 GB"},
		} {
			if got := valueText(c.f, c.metric); got != c.want {
				t.Errorf("valueText(%+v, %s) = %q, want %q", c.f, c.metric, got, c.want)
			}
		}
	})

	t.Run("NonFinite", func(t *testing.T) {
		nan, inf := math.NaN(), math.Inf(1)
		results := []Result{
			{Workload: "odd/nan", Cambium: Figures{PerSec: nan}, Comparisons: []Comparison{
				{Baseline: "b", Metric: "per_sec", Figures: Figures{PerSec: 10}, Ratio: nan, Target: nan},
			}},
			{Workload: "odd/inf", Cambium: Figures{PerSec: inf}, Comparisons: []Comparison{
				{Baseline: "b", Metric: "per_sec", Figures: Figures{PerSec: 10}, Ratio: inf, Target: 1},
				{Baseline: "inf", Metric: "per_sec", Figures: Figures{PerSec: inf}, Ratio: nan, Target: 1},
			}},
			{Workload: "odd/zero", Comparisons: []Comparison{
				{Baseline: "b", Metric: "per_sec", Figures: Figures{PerSec: 10}},
				{Baseline: "zero bytes", Metric: "bytes", Figures: Figures{Requests: 2}, Ratio: 0, Target: 1},
				{Baseline: "negative", Metric: "bytes", Figures: Figures{Bytes: -5}, Ratio: -1, Target: 1},
			}},
			{Workload: "odd/none"},
			{Workload: "", Cambium: Figures{PerSec: -3}, Comparisons: []Comparison{{Baseline: "b", Figures: Figures{PerSec: 1}}}},
		}
		charts := Charts(results)
		if len(charts) != 2 {
			t.Fatalf("%d charts, want 2 (odd, other)", len(charts))
		}
		elems := parseSVG(t, charts["odd"])
		if n := len(bars(elems)); n != 8 { // "inf" and "negative" are not measured
			t.Errorf("%d bar rects, want 8", n)
		}
		if n := len(texts(elems, "baseline not measured")); n != 2 {
			t.Errorf("%d notes, want 2", n)
		}
		if len(texts(elems, "ratio n/a (no target)")) != 1 || len(texts(elems, "ratio n/a (target >=1.0x)")) != 1 {
			t.Error("non-finite ratios not printed as n/a")
		}
		if len(bars(parseSVG(t, charts["other"]))) != 2 {
			t.Error("chart for an empty workload name lacks its bars")
		}
		if got := Charts(nil); len(got) != 0 {
			t.Errorf("Charts(nil) = %d charts", len(got))
		}
	})
}

func TestWriteCharts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "charts", "run")
	paths, err := WriteCharts(dir, chartResults())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range []string{"commit", "fastforward", "pointread"} {
		want = append(want, filepath.Join(dir, f+".svg"))
	}
	if !slices.Equal(paths, want) {
		t.Fatalf("paths %v, want %v", paths, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("%d files in %s, want %d", len(entries), dir, len(want))
	}
	charts := Charts(chartResults())
	for _, p := range paths {
		doc, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		parseSVG(t, doc)
		if f := strings.TrimSuffix(filepath.Base(p), ".svg"); !bytes.Equal(doc, charts[f]) {
			t.Errorf("%s differs from Charts()[%q]", p, f)
		}
	}
}
