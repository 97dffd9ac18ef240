// Package readahead decides which remote frames a scan of a volume fetches,
// and when: the engine reads a page whose image is in the remote (a stub)
// by fetching the segment frame that holds it, and a scan that fetched one
// frame per page would wait for one request per frame.
//
// # Policy
//
// A scan reads remote pages in page order, so each read of a frame in that
// order fetches more of the frames that follow it: a window of frames that
// grows fourfold with each such read (1, 4, 16, 64, then 256 frames, at
// most maxWindow), read with one ranged GET. While the window ramps up it
// is one run: frames consecutive in one segment, ended by a frame that is
// not (another segment, or a gap) and by a page stored locally. Once the
// window reaches prefetchFrom (64), the scan also fetches in the
// background, prefetchRuns (8) windows at a time and concurrently, the
// frames ahead of the reader, which waits only for the window that holds
// its page; when the reader reaches those, the next prefetchRuns windows
// start (see Planner.LocalRead), so that one batch is always on its way
// and a steady scan rarely waits. From then on a frame that is not
// consecutive starts a new run rather than ending the plan, and "in order"
// steps over pages stored locally, such as the b-tree interior pages among
// the leaves: up to maxSkip (16) of them in a row (more end the plan).
//
// With a disk budget, the engine bounds the pages of one plan
// (Planner.SetMaxAhead): frames fetched ahead of a scan are stored, and a
// bound near the budget would have the evictor evict them before the
// scan reaches them, to be fetched again.
//
// A read out of order (a random read, or an interior page that a scan
// reads in passing) fetches its frame alone and leaves the scan's state as
// it was; a second read in order after it (a read of the page after that
// frame) starts a new scan. Each scan has a generation: a background
// prefetch planned for an older scan fetches its frames but moves nothing
// of the newer one.
//
// # What the planner does not do
//
// A Planner does no I/O and starts no goroutines. It learns what is at a
// page from a Lookup the engine supplies (which may read local storage) and
// returns plans: the frames to fetch now, runs of frames to fetch in the
// background, and whether to start the background prefetch. Claiming
// frames, fetching them, storing their pages and running the background
// work are the engine's.
//
// # Concurrency
//
// A Planner's methods are safe for concurrent use. Its scan state is
// guarded by a mutex that is never held while a Lookup runs, so a plan is
// made from what the pages were a moment ago: the engine fetches only the
// frames that are still stubs once it has claimed them. LocalRead, on the
// path of every page read from local storage, takes no lock.
//
// # Example
//
//	var pl readahead.Planner[stub]
//	now, later, extend := pl.Read(s, lookup) // a read of stub s missed
//	// fetch now (the run that holds s's page); start a fetch of each of later
//	if extend || pl.LocalRead(p) {
//		// in the background, once at a time:
//		pf := pl.Extend(lookup)
//		// start a fetch of each of pf.Runs, then
//		pl.Started(pf)
//	}
package readahead
