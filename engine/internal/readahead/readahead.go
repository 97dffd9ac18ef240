package readahead

import (
	"sync"
	"sync/atomic"

	"github.com/cambiumdb/cambium/segment"
)

// The policy's numbers (see the package doc).
const (
	maxWindow    = 256 // frames a window grows to
	prefetchRuns = 8   // windows a background prefetch fetches at a time
	prefetchFrom = 64  // the window from which a scan prefetches in the background
	maxSkip      = 16  // pages stored locally that a scan steps over in a row
)

// PageNo is a page number; the first page is 1.
type PageNo = segment.PageNo

// Kind says what is at a page.
type Kind uint8

const (
	// Missing: no value, or one that cannot be read or is damaged. A plan
	// ends before it.
	Missing Kind = iota
	// Local: the page is stored locally (an image, or zeros). A plan ends
	// before it, or steps over it.
	Local
	// Remote: the page's image is in a remote frame, which Lookup returns.
	Remote
)

// Frame is what the engine knows of a remote frame: where it is and which
// pages it holds, and which segment it is in. The planner copies frames
// into its plans and never looks inside them otherwise.
type Frame[F any] interface {
	// Frame returns the frame's offset and length in its segment and its
	// first and last pages.
	Frame() segment.Frame
	// SameSegment reports whether f is a frame of the same segment.
	SameSegment(f F) bool
}

// Lookup says what is at page p of the volume now, and, for Remote, the
// frame that holds p. The planner calls it without holding its lock, from
// the goroutine that called Read or Extend; it may read local storage.
type Lookup[F any] func(p PageNo) (Kind, F)

// Planner holds the readahead state of one volume and plans its fetches;
// its zero value is ready to use, with no scan under way.
type Planner[F Frame[F]] struct {
	mu struct {
		sync.Mutex
		next      PageNo // the page after the furthest frame the scan has fetched or is fetching
		window    int    // the scan's window, in frames
		candidate PageNo // the page after the last read out of order
		gen       uint64 // counts scans: a prefetch planned for an older one moves nothing
	}
	// A read of a page stored locally in [trigger, until) starts the next
	// prefetch; trigger is 0 when none is armed. Outside mu, for LocalRead.
	trigger, until atomic.Uint32
	// maxAhead bounds the pages of one plan (SetMaxAhead); 0: no bound.
	maxAhead atomic.Int64
}

// SetMaxAhead bounds the pages one plan fetches (its frames' pages, the
// reader's frame included), so that what a scan reads ahead fits a disk
// budget with room to spare; 0 removes the bound. A plan always holds the
// reader's frame.
func (pl *Planner[F]) SetMaxAhead(pages int) { pl.maxAhead.Store(int64(max(pages, 0))) }

// Read plans the fetch for a reader of frame f, whose page it did not find
// stored locally: now is the run to fetch at once, f first, with one
// ranged GET (f alone for a read out of order); later holds runs to fetch
// in the background; extend asks the engine to start a background prefetch
// (Extend) unless one is being planned already.
func (pl *Planner[F]) Read(f F, at Lookup[F]) (now []F, later [][]F, extend bool) {
	fr := f.Frame()
	pl.mu.Lock()
	switch fr.First {
	case pl.mu.next:
		pl.mu.window = min(pl.mu.window*4, maxWindow)
	case pl.mu.candidate:
		pl.mu.window, pl.mu.next = 4, 0
		pl.mu.gen++
	default:
		pl.mu.candidate = fr.Last + 1
		pl.mu.Unlock()
		return []F{f}, nil, false
	}
	window, gen := pl.mu.window, pl.mu.gen
	pl.mu.Unlock()
	runs, next := following(f, window, window, int(pl.maxAhead.Load()), window >= prefetchFrom, at)
	pl.mu.Lock()
	if pl.mu.gen == gen {
		pl.mu.next = max(pl.mu.next, next)
	}
	pl.mu.Unlock()
	return runs[0], runs[1:], window >= prefetchFrom
}

// LocalRead is called for each page read from local storage: it reports
// whether this read should start the next background prefetch (Extend),
// which is once, for the first read that reaches the frames the last
// prefetch fetched.
func (pl *Planner[F]) LocalRead(p PageNo) bool {
	t := pl.trigger.Load()
	return t != 0 && uint32(p) >= t && uint32(p) < pl.until.Load() && pl.trigger.CompareAndSwap(t, 0)
}

// Prefetch is a background prefetch that Extend planned: the runs of
// frames to fetch, each with one ranged GET, and what the scan's state
// becomes once they are under way (Started).
type Prefetch[F any] struct {
	Runs [][]F
	gen  uint64 // of the scan it was planned for
	next PageNo // the page a scan reading Runs would next find missing
}

// Extend grows the scan's window and plans the fetch of the next
// prefetchRuns windows of frames from the scan's next page (or from the
// first page after it that is not stored locally, within maxSkip pages).
// Runs is empty when there is nothing to fetch there. The engine calls
// Extend from one background goroutine at a time, starts a fetch of each
// run, and then calls Started.
func (pl *Planner[F]) Extend(at Lookup[F]) Prefetch[F] {
	pl.mu.Lock()
	pl.mu.window = min(pl.mu.window*4, maxWindow)
	from, window, gen := pl.mu.next, pl.mu.window, pl.mu.gen
	pl.mu.Unlock()
	f, ok := frameFrom(from, at)
	if !ok {
		return Prefetch[F]{}
	}
	runs, next := following(f, window, prefetchRuns*window, int(pl.maxAhead.Load()), true, at)
	return Prefetch[F]{Runs: runs, gen: gen, next: next}
}

// Started records that the runs of pf are being fetched: if the scan it
// was planned for is still the current one and pf goes further, the scan's
// next page moves past its frames, and the reader's entering them (a
// LocalRead of a page from the first) starts the next prefetch, so that
// one is always on its way.
func (pl *Planner[F]) Started(pf Prefetch[F]) {
	if len(pf.Runs) == 0 {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.mu.gen == pf.gen && pf.next > pl.mu.next {
		pl.mu.next = pf.next
		pl.until.Store(uint32(pf.next))
		pl.trigger.Store(uint32(pf.Runs[0][0].Frame().First))
	}
}

// frameFrom returns the frame of page p, or of the first page after it
// that is not stored locally, within maxSkip pages.
func frameFrom[F Frame[F]](p PageNo, at Lookup[F]) (F, bool) {
	var none F
	for end := p + maxSkip; p <= end; p++ {
		switch k, f := at(p); k {
		case Remote:
			return f, true
		case Missing:
			return none, false
		}
	}
	return none, false
}

// following returns up to n frames (and, when maxPages > 0, no more
// frames once they hold maxPages pages), f and those holding the pages
// after it in page order, in runs of at most window consecutive frames of
// one segment, f's run first, and the page a scan reading them would next
// find missing. It stops at the first page stored locally, or, with skip, steps
// over up to maxSkip of them in a row (a scan's b-tree interior pages,
// read in passing); without skip, a frame that is not consecutive also
// ends it, after one run.
func following[F Frame[F]](f F, window, n, maxPages int, skip bool, at Lookup[F]) ([][]F, PageNo) {
	runs := [][]F{{f}}
	p, frames, skipped := f.Frame().Last+1, 1, 0
	pages := f.Frame().PageCount()
	for {
		k, g := at(p)
		if k == Missing {
			break
		}
		if k == Local {
			if skipped++; !skip || skipped > maxSkip {
				break
			}
			p++
			continue
		}
		skipped = 0
		if frames == n || maxPages > 0 && pages >= maxPages {
			break // p is the next page missing
		}
		gf := g.Frame()
		if gf.Last < p {
			break
		}
		p = gf.Last + 1
		run := runs[len(runs)-1]
		prev := run[len(run)-1]
		pf := prev.Frame()
		switch {
		case g.SameSegment(prev) && gf.Offset == pf.Offset:
			continue // another page of the same frame
		case g.SameSegment(prev) && gf.Offset == pf.End() && len(run) < window:
			runs[len(runs)-1] = append(run, g)
		default:
			if !skip {
				return runs, gf.First // not consecutive: the ramp fetches one run
			}
			runs = append(runs, []F{g})
		}
		frames++
		pages += gf.PageCount()
	}
	return runs, p
}
