package readahead

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cambiumdb/cambium/segment"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata with what the planner does")

// TestPlanner runs the cases in testdata/*.txt. A file is a sequence of
// steps, each a command line, "----", and the output expected, ended by a
// blank line; lines starting with # between steps are comments. Commands:
//
//	layout TOKEN...   a new volume and planner; pages from 1 in order:
//	                  a*N   N one-page frames of segment a (any lower-case
//	                        name); a*Nx4: of four pages each; a: a*1. Every
//	                        frame starts where the one before ended, in
//	                        whichever segment: only a segment's frames
//	                        are consecutive
//	                  +     a gap: the next frame does not start where the
//	                        one before ended
//	                  L*N   N pages stored locally; .*N: N pages with nothing
//	                        (pages after the layout have nothing either)
//	read P [trace] [during=C,D...]
//	                  a reader misses page P and plans with Read; trace
//	                  lists the pages the plan looked up; during runs
//	                  commands C, D... (a number N is "read N") while the
//	                  plan looks up its first page, as other goroutines would
//	ahead N           SetMaxAhead(N): a plan fetches at most N pages
//	store P-Q         pages P..Q are stored locally now (a fetch stored them)
//	local P-Q         reads of pages P..Q from local storage, in order: which
//	                  LocalRead tells to start the next prefetch
//	extend [NAME]     plan a background prefetch with Extend, kept as NAME
//	started [NAME]    Started for the prefetch kept as NAME
//
// Runs print as segment:first-last/frames, the state as the planner's
// fields.
func TestPlanner(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in testdata: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runFile(t, file)
		})
	}
}

// tframe is a frame of the test's volume.
type tframe struct {
	seg string
	fr  segment.Frame
}

func (f tframe) Frame() segment.Frame      { return f.fr }
func (f tframe) SameSegment(o tframe) bool { return f.seg == o.seg }

var _ Frame[tframe] = tframe{}

// volume is what the engine would see: what is at each page.
type volume struct {
	kinds  map[PageNo]Kind
	frames map[PageNo]tframe
	looked []PageNo // by the current plan
	hook   func()   // run at the next lookup
}

func (v *volume) at(p PageNo) (Kind, tframe) {
	v.looked = append(v.looked, p)
	if h := v.hook; h != nil {
		v.hook = nil
		h()
	}
	return v.kinds[p], v.frames[p]
}

func parseLayout(tokens []string) (*volume, string, error) {
	v := &volume{kinds: map[PageNo]Kind{}, frames: map[PageNo]tframe{}}
	// One offset cursor for every segment: a frame of another segment
	// often starts where the frame before it ends, and only SameSegment
	// tells them apart.
	var offset int64
	p := PageNo(1)
	var desc []string
	for _, tok := range tokens {
		name, count, _ := strings.Cut(tok, "*")
		n, per := 1, 1
		if count != "" {
			c, each, ok := strings.Cut(count, "x")
			var err error
			if n, err = strconv.Atoi(c); err != nil {
				return nil, "", fmt.Errorf("token %q: %v", tok, err)
			}
			if ok {
				if per, err = strconv.Atoi(each); err != nil {
					return nil, "", fmt.Errorf("token %q: %v", tok, err)
				}
			}
		}
		first := p
		switch {
		case name == "+":
			offset += 100
			desc = append(desc, "gap")
			continue
		case name == "L":
			for range n {
				v.kinds[p] = Local
				p++
			}
			desc = append(desc, fmt.Sprintf("%d-%d local", first, p-1))
		case name == ".":
			p += PageNo(n)
			desc = append(desc, fmt.Sprintf("%d-%d nothing", first, p-1))
		case name != "" && strings.Trim(name, "abcdefghijklmnopqrstuvwxyz") == "":
			for range n {
				f := tframe{seg: name, fr: segment.Frame{Offset: offset, Length: 100, First: p, Last: p + PageNo(per) - 1}}
				offset += 100
				for range per {
					v.kinds[p], v.frames[p] = Remote, f
					p++
				}
			}
			desc = append(desc, fmt.Sprintf("%d-%d %s (%d frames)", first, p-1, name, n))
		default:
			return nil, "", fmt.Errorf("token %q: not a layout token", tok)
		}
	}
	return v, strings.Join(desc, ", "), nil
}

func formatRuns(runs ...[]tframe) string {
	var out []string
	for _, run := range runs {
		out = append(out, fmt.Sprintf("%s:%d-%d/%d", run[0].seg, run[0].fr.First, run[len(run)-1].fr.Last, len(run)))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

func formatState(pl *Planner[tframe]) string {
	return fmt.Sprintf("state: next=%d window=%d candidate=%d gen=%d trigger=%d until=%d",
		pl.mu.next, pl.mu.window, pl.mu.candidate, pl.mu.gen, pl.trigger.Load(), pl.until.Load())
}

// formatPages prints pages as ranges of consecutive ones.
func formatPages(ps []PageNo) string {
	var out []string
	for i := 0; i < len(ps); {
		j := i + 1
		for j < len(ps) && ps[j] == ps[j-1]+1 {
			j++
		}
		if j == i+1 {
			out = append(out, strconv.Itoa(int(ps[i])))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", ps[i], ps[j-1]))
		}
		i = j
	}
	return strings.Join(out, " ")
}

func parseRange(s string) (PageNo, PageNo, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err := strconv.ParseUint(a, 10, 32)
	if err != nil {
		return 0, 0, err
	}
	hi := lo
	if ok {
		if hi, err = strconv.ParseUint(b, 10, 32); err != nil {
			return 0, 0, err
		}
	}
	return PageNo(lo), PageNo(hi), nil
}

type runner struct {
	v     *volume
	pl    *Planner[tframe]
	plans map[string]Prefetch[tframe]
}

func (r *runner) read(p PageNo) ([]string, error) {
	if r.v.kinds[p] != Remote {
		return nil, fmt.Errorf("page %d is not remote: a read would not plan", p)
	}
	now, later, extend := r.pl.Read(r.v.frames[p], r.v.at)
	out := []string{"now: " + formatRuns(now)}
	if len(later) > 0 {
		out = append(out, "later: "+formatRuns(later...))
	}
	if extend {
		out = append(out, "extend")
	}
	return out, nil
}

func (r *runner) do(cmd string) (string, error) {
	f := strings.Fields(cmd)
	if r.pl == nil && f[0] != "layout" {
		return "", fmt.Errorf("no layout yet")
	}
	var out []string
	switch f[0] {
	case "layout":
		v, desc, err := parseLayout(f[1:])
		if err != nil {
			return "", err
		}
		r.v, r.pl, r.plans = v, &Planner[tframe]{}, map[string]Prefetch[tframe]{}
		out = append(out, desc)
	case "read":
		if len(f) < 2 {
			return "", fmt.Errorf("read which page?")
		}
		lo, _, err := parseRange(f[1])
		if err != nil {
			return "", err
		}
		trace := false
		var inner []string
		for _, arg := range f[2:] {
			switch {
			case arg == "trace":
				trace = true
			case strings.HasPrefix(arg, "during="):
				during := strings.Split(strings.TrimPrefix(arg, "during="), ",")
				r.v.hook = func() {
					looked := r.v.looked
					for _, c := range during {
						if _, err := strconv.Atoi(c); err == nil {
							c = "read " + c
						}
						r.v.looked = nil
						got, err := r.do(c)
						if err != nil {
							got = err.Error()
						}
						inner = append(inner, fmt.Sprintf("  meanwhile %s: %s", c, strings.ReplaceAll(got, "\n", "; ")))
					}
					r.v.looked = looked
				}
			default:
				return "", fmt.Errorf("read: unknown argument %q", arg)
			}
		}
		r.v.looked = nil
		got, err := r.read(lo)
		if err != nil {
			return "", err
		}
		r.v.hook = nil
		out = append(out, inner...)
		out = append(out, got...)
		if trace {
			out = append(out, "looked up: "+formatPages(r.v.looked))
		}
		out = append(out, formatState(r.pl))
	case "ahead":
		if len(f) < 2 {
			return "", fmt.Errorf("ahead how many pages?")
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			return "", err
		}
		r.pl.SetMaxAhead(n)
		return "ok", nil
	case "store":
		lo, hi, err := parseRange(f[1])
		if err != nil {
			return "", err
		}
		for p := lo; p <= hi; p++ {
			r.v.kinds[p] = Local
		}
		return "ok", nil
	case "local":
		lo, hi, err := parseRange(f[1])
		if err != nil {
			return "", err
		}
		var starts []PageNo
		for p := lo; p <= hi; p++ {
			if r.pl.LocalRead(p) {
				starts = append(starts, p)
			}
		}
		if len(starts) == 0 {
			out = append(out, "no prefetch")
		} else {
			out = append(out, "prefetch at "+formatPages(starts))
		}
		out = append(out, formatState(r.pl))
	case "extend":
		name := "last"
		if len(f) > 1 {
			name = f[1]
		}
		r.v.looked = nil
		pf := r.pl.Extend(r.v.at)
		r.plans[name] = pf
		out = append(out, "runs: "+formatRuns(pf.Runs...))
		if len(pf.Runs) > 0 {
			out = append(out, fmt.Sprintf("planned: gen=%d next=%d", pf.gen, pf.next))
		}
		out = append(out, formatState(r.pl))
	case "started":
		name := "last"
		if len(f) > 1 {
			name = f[1]
		}
		pf, ok := r.plans[name]
		if !ok {
			return "", fmt.Errorf("no prefetch %q", name)
		}
		r.pl.Started(pf)
		out = append(out, formatState(r.pl))
	default:
		return "", fmt.Errorf("unknown command %q", f[0])
	}
	return strings.Join(out, "\n"), nil
}

type step struct {
	cmd       string
	line      int
	want      string
	wantStart int // line index of the first expected line
	wantEnd   int // line index after the last
}

func runFile(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var steps []step
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		s := step{cmd: l, line: i + 1}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: want ---- after the command", file, i+1)
		}
		i += 2
		s.wantStart = i
		for i < len(lines) && lines[i] != "" {
			i++
		}
		s.wantEnd = i
		s.want = strings.Join(lines[s.wantStart:s.wantEnd], "\n")
		steps = append(steps, s)
	}
	r := &runner{}
	var rewritten []string
	last := 0
	for _, s := range steps {
		got, err := r.do(s.cmd)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", file, s.line, s.cmd, err)
		}
		if *rewrite {
			rewritten = append(rewritten, lines[last:s.wantStart]...)
			rewritten = append(rewritten, got)
			last = s.wantEnd
			continue
		}
		if got != s.want {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, s.line, s.cmd, got, s.want)
		}
	}
	if *rewrite {
		rewritten = append(rewritten, lines[last:]...)
		if err := os.WriteFile(file, []byte(strings.Join(rewritten, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPlanner_Zero: a Planner's zero value has no scan under way, and
// LocalRead starts nothing.
func TestPlanner_Zero(t *testing.T) {
	var pl Planner[tframe]
	if pl.LocalRead(1) || pl.LocalRead(0) {
		t.Fatal("LocalRead on a new planner starts a prefetch")
	}
	pl.Started(Prefetch[tframe]{})
	if pl.mu.next != 0 || pl.trigger.Load() != 0 {
		t.Fatalf("an empty prefetch moved the state: %s", formatState(&pl))
	}
}

// TestPlanner_Concurrent: readers, local reads and prefetches at once on
// one planner (run with -race): every plan begins with the frame read, and
// its runs hold frames consecutive in one segment, each of at most
// maxWindow frames.
func TestPlanner_Concurrent(t *testing.T) {
	v, _, err := parseLayout(strings.Fields("a*500 L*3 a*500 b*500 + a*2000"))
	if err != nil {
		t.Fatal(err)
	}
	at := func(p PageNo) (Kind, tframe) { return v.kinds[p], v.frames[p] } // read only
	check := func(runs ...[]tframe) error {
		for _, run := range runs {
			if len(run) == 0 || len(run) > maxWindow {
				return fmt.Errorf("run of %d frames", len(run))
			}
			for i := 1; i < len(run); i++ {
				if !run[i].SameSegment(run[i-1]) || run[i].fr.Offset != run[i-1].fr.End() {
					return fmt.Errorf("run %s is not consecutive", formatRuns(run))
				}
			}
		}
		return nil
	}
	var pl Planner[tframe]
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Go(func() {
			for p := PageNo(1 + g*700); p < PageNo(len(v.kinds)); p++ {
				if v.kinds[p] != Remote {
					continue
				}
				now, later, extend := pl.Read(v.frames[p], at)
				if now[0] != v.frames[p] {
					errs <- fmt.Errorf("read of page %d plans %s first", p, formatRuns(now))
					return
				}
				if err := check(append([][]tframe{now}, later...)...); err != nil {
					errs <- err
					return
				}
				if extend || pl.LocalRead(p) {
					pf := pl.Extend(at)
					if err := check(pf.Runs...); err != nil {
						errs <- err
						return
					}
					pl.Started(pf)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
