package bench

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProcessesConfig configures the processes workload (issue 15): several
// processes on one data directory, the first owning it and serving the
// others over its socket.
//
// Every side runs in a worker process, a new process of the same program
// (Worker): the point reads of a process that joined the owner against
// the same reads in the owner; the small write transactions of the joined
// process against the same process on a plain file in WAL + NORMAL; and
// the handover, from the owner's SIGKILL or clean exit to the joined
// process's next commit. Workers time their own work, so a process's
// start and the requests that steer it are outside the figures.
type ProcessesConfig struct {
	Dir string // scratch directory
	// Worker starts a worker: a program and its arguments, which runs
	// ServeProcessWorker on its standard input and output (the CLI's
	// hidden `cambium bench-worker`). Env is added to its environment.
	Worker []string
	Env    []string
	// Rows of the read table (the reference table of BENCHMARKS.md,
	// default 50,000, ~51 MB) and point SELECTs by id per side and round
	// (default 200,000).
	Rows, Reads int
	// Transactions per side and round (default 1,000), each an UPDATE
	// and an INSERT as in the commit workload, on a table of WriteRows
	// rows (default 10,000).
	Transactions, WriteRows int
	// Rounds is how many times each side of the reads and the writes
	// runs, the sides taking turns to go first (default 5); Handovers
	// how many of each kind, SIGKILL and clean exit (default 5).
	Rounds, Handovers int
	// Profile, if set, is a directory where the workers write CPU
	// profiles of the timed parts of the first round: the joined
	// process's and the owner's while the joined one works, and the
	// owner's own reads.
	Profile string
}

// processesTargets are issue 15's goals: a joined process's point reads
// at 0.8x the owner's, its small writes at 0.5x a plain file's.
var processesTargets = map[string]float64{"reads": 0.8, "writes": 0.5}

// RunProcesses runs the processes workload.
func RunProcesses(ctx context.Context, cfg ProcessesConfig) ([]Result, error) {
	if len(cfg.Worker) == 0 {
		return nil, errors.New("processes: no worker command")
	}
	if cfg.Rows == 0 {
		cfg.Rows = 50000
	}
	if cfg.Reads == 0 {
		cfg.Reads = 200000
	}
	if cfg.Transactions == 0 {
		cfg.Transactions = 1000
	}
	if cfg.WriteRows == 0 {
		cfg.WriteRows = 10000
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 5
	}
	if cfg.Handovers == 0 {
		cfg.Handovers = 5
	}
	var err error
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, err
	}
	if cfg.Profile != "" {
		if cfg.Profile, err = filepath.Abs(cfg.Profile); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(cfg.Profile, 0o755); err != nil {
			return nil, err
		}
	}
	p := &processes{cfg: cfg, ctx: ctx}
	defer p.stopAll()
	var results []Result
	for _, part := range []func() (Result, error){p.reads, p.writes} {
		r, err := part()
		if err != nil {
			return results, err
		}
		results = append(results, r)
		p.stopAll()
	}
	rs, err := p.handovers()
	if err != nil {
		return results, err
	}
	return append(results, rs...), nil
}

// processes is one run of the workload: its workers, ended when it ends.
type processes struct {
	cfg     ProcessesConfig
	ctx     context.Context
	workers []*worker
}

func (p *processes) stopAll() {
	for _, w := range p.workers {
		w.stop()
	}
	p.workers = nil
}

// start starts a worker.
func (p *processes) start(name string) (*worker, error) {
	cmd := exec.CommandContext(p.ctx, p.cfg.Worker[0], p.cfg.Worker[1:]...)
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	w := &worker{name: name, cmd: cmd}
	cmd.Stderr = &w.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", name, err)
	}
	w.in, w.out = in, bufio.NewScanner(out)
	w.out.Buffer(nil, 1<<20)
	p.workers = append(p.workers, w)
	return w, nil
}

// open opens a handle in worker w on a volume of data directory dir, and
// checks that w is the owner (or is not).
func (p *processes) open(w *worker, handle, dir, volume string, owner bool, pragmas ...string) error {
	r, err := w.do(append([]string{"open", handle, "cambium", dir, volume}, pragmas...)...)
	if err != nil {
		return err
	}
	if want := map[bool]string{true: "owner", false: "joined"}[owner]; r.Role != want {
		return fmt.Errorf("worker %s opened %s as %s, want %s", w.name, dir, r.Role, want)
	}
	return nil
}

// profiled runs fn, each of workers profiling it into the profile
// directory as <what>-<worker>.pprof, when round is the first and the
// configuration asks for profiles.
func (p *processes) profiled(round int, what string, fn func() error, workers ...*worker) error {
	if p.cfg.Profile == "" || round != 0 {
		return fn()
	}
	for _, w := range workers {
		if _, err := w.do("profile", filepath.Join(p.cfg.Profile, what+"-"+w.name+".pprof")); err != nil {
			return err
		}
	}
	err := fn()
	for _, w := range workers {
		if _, perr := w.do("profile", ""); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

// pairs runs one measurement per side and round, the sides taking turns
// to go first, and returns each round's durations: ours, then the
// baseline's.
func pairs(rounds int, ours, theirs func(round int) (time.Duration, error)) (a, b []time.Duration, err error) {
	for i := range rounds {
		first, second := ours, theirs
		if i%2 == 1 {
			first, second = theirs, ours
		}
		d1, err := first(i)
		if err != nil {
			return nil, nil, err
		}
		d2, err := second(i)
		if err != nil {
			return nil, nil, err
		}
		if i%2 == 1 {
			d1, d2 = d2, d1
		}
		a, b = append(a, d1), append(b, d2)
	}
	return a, b, nil
}

// roundsResult is a result of paired rounds: each side's median round,
// and the median of the rounds' ratios with their spread.
func roundsResult(workload, baseline string, ops int, ours, theirs []time.Duration, target float64, note string) Result {
	var of, tf []Figures
	var ratios []float64
	for i := range ours {
		of, tf = append(of, figures(ops, ours[i])), append(tf, figures(ops, theirs[i]))
		ratios = append(ratios, theirs[i].Seconds()/ours[i].Seconds())
	}
	res := Result{Workload: workload, Cambium: medianRound(of)}
	res.compare(baseline, medianRound(tf), target)
	slices.Sort(ratios)
	c := &res.Comparisons[0]
	c.Ratio, c.RatioMin, c.RatioMax = ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1]
	res.Notes = append(res.Notes, fmt.Sprintf("%s; each side's median of %d rounds, the two taking turns to go first; the ratio is the median of the rounds' ratios, their spread in brackets", note, len(ours)))
	return res
}

// reads measures point reads in a joined process against the owner's.
func (p *processes) reads() (Result, error) {
	dir := filepath.Join(p.cfg.Dir, "reads")
	owner, err := p.start("owner")
	if err != nil {
		return Result{}, err
	}
	if err := p.open(owner, "r", dir, "reads.db", true); err != nil {
		return Result{}, err
	}
	if _, err := owner.do("reference", "r", strconv.Itoa(p.cfg.Rows)); err != nil {
		return Result{}, err
	}
	joined, err := p.start("joined")
	if err != nil {
		return Result{}, err
	}
	if err := p.open(joined, "r", dir, "reads.db", false); err != nil {
		return Result{}, err
	}
	// Both read every row once first: the owner's page cache and the
	// joined process's cache of images hold the table.
	for _, w := range []*worker{owner, joined} {
		if _, err := w.do("scan", "r"); err != nil {
			return Result{}, err
		}
	}
	before, err := joined.do("stats", "r")
	if err != nil {
		return Result{}, err
	}
	read := func(w *worker, what string, others ...*worker) func(int) (time.Duration, error) {
		return func(round int) (time.Duration, error) {
			var d time.Duration
			err := p.profiled(round, what, func() error {
				r, err := w.do("reads", "r", strconv.Itoa(p.cfg.Reads), strconv.Itoa(p.cfg.Rows), strconv.Itoa(round))
				d = r.Elapsed
				return err
			}, append([]*worker{w}, others...)...)
			return d, err
		}
	}
	ours, theirs, err := pairs(p.cfg.Rounds, read(joined, "reads-joined", owner), read(owner, "reads-owner"))
	if err != nil {
		return Result{}, fmt.Errorf("reads: %w", err)
	}
	after, err := joined.do("stats", "r")
	if err != nil {
		return Result{}, err
	}
	res := roundsResult("processes/reads", "the same reads in the owner process", p.cfg.Reads, ours, theirs, processesTargets["reads"],
		fmt.Sprintf("%d point SELECTs by id on the %d-row reference table, through the Go VFS, in a process that joined the owner (cambium bench-worker) against the same in the owner", p.cfg.Reads, p.cfg.Rows))
	reads, misses := after.Reads-before.Reads, (after.Reads-after.Hits)-(before.Reads-before.Hits)
	res.Notes = append(res.Notes, fmt.Sprintf("the joined process read %d pages from the engine in its rounds, %d of them from the owner (not in its cache)", reads, misses))
	return res, nil
}

// writes measures small write transactions in a joined process against
// the same process on a plain file.
func (p *processes) writes() (Result, error) {
	dir := filepath.Join(p.cfg.Dir, "writes")
	owner, err := p.start("owner")
	if err != nil {
		return Result{}, err
	}
	// The owner keeps a volume open, which keeps the data directory open.
	if err := p.open(owner, "keep", dir, "keep.db", true); err != nil {
		return Result{}, err
	}
	joined, err := p.start("joined")
	if err != nil {
		return Result{}, err
	}
	// The joined process's page reads during its transactions, and those
	// its cache of images did not answer.
	var reads, misses int64
	write := func(handle string, open func(round int) error) func(int) (time.Duration, error) {
		return func(round int) (time.Duration, error) {
			if err := open(round); err != nil {
				return 0, err
			}
			if _, err := joined.do("reference", handle, strconv.Itoa(p.cfg.WriteRows)); err != nil {
				return 0, err
			}
			var before workerReply
			if handle == "cambium" {
				var err error
				if before, err = joined.do("stats", handle); err != nil {
					return 0, err
				}
			}
			var d time.Duration
			err := p.profiled(round, "writes-"+handle, func() error {
				r, err := joined.do("writes", handle, strconv.Itoa(p.cfg.Transactions), strconv.Itoa(p.cfg.WriteRows), strconv.Itoa(round))
				d = r.Elapsed
				return err
			}, joined, owner)
			if err != nil {
				return 0, err
			}
			if handle == "cambium" {
				after, err := joined.do("stats", handle)
				if err != nil {
					return 0, err
				}
				misses += (after.Reads - after.Hits) - (before.Reads - before.Hits)
				reads += after.Reads - before.Reads
			}
			_, err = joined.do("close", handle)
			return d, err
		}
	}
	ours := write("cambium", func(round int) error {
		return p.open(joined, "cambium", dir, fmt.Sprintf("commit-%d.db", round), false, "PRAGMA synchronous=NORMAL")
	})
	theirs := write("plain", func(round int) error {
		d := filepath.Join(p.cfg.Dir, "plain", strconv.Itoa(round))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		_, err := joined.do("open", "plain", "plain", d, "commit.sqlite", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
		return err
	})
	o, t, err := pairs(p.cfg.Rounds, ours, theirs)
	if err != nil {
		return Result{}, fmt.Errorf("writes: %w", err)
	}
	res := roundsResult("processes/writes", "plain file, WAL, synchronous=NORMAL", p.cfg.Transactions, o, t, processesTargets["writes"],
		fmt.Sprintf("%d transactions (an UPDATE and an INSERT) at synchronous=NORMAL, through the Go VFS, in a process that joined the owner, each round on a new volume of a %d-row table, against the same process on a new plain file", p.cfg.Transactions, p.cfg.WriteRows))
	n := float64(p.cfg.Rounds * p.cfg.Transactions)
	res.Notes = append(res.Notes, fmt.Sprintf("the joined process read %.2f pages per transaction from the engine, %.2f of them not from its cache of images (its transaction's own writes, or the owner)", float64(reads)/n, float64(misses)/n))
	return res, nil
}

// handovers measures the time from the owner's SIGKILL, or from its clean
// exit, to the next commit of a process that had joined it, which takes
// the data directory over; the next round's owner is that process.
func (p *processes) handovers() ([]Result, error) {
	dir := filepath.Join(p.cfg.Dir, "handover")
	owner, err := p.start("owner")
	if err != nil {
		return nil, err
	}
	if err := p.open(owner, "h", dir, "handover.db", true); err != nil {
		return nil, err
	}
	if _, err := owner.do("exec", "h", "CREATE TABLE t(id INTEGER PRIMARY KEY, at INTEGER)"); err != nil {
		return nil, err
	}
	kinds := []string{"kill", "exit"}
	// times are the handovers; ends the owners' ends: from the signal to
	// the killed process's end, or from the exit request to the process's
	// end (before its handover's clock starts).
	times, ends := map[string][]time.Duration{}, map[string][]time.Duration{}
	commits := 0
	for i := range 2 * p.cfg.Handovers {
		kind := kinds[i%2]
		next, err := p.start("joined")
		if err != nil {
			return nil, err
		}
		if err := p.open(next, "h", dir, "handover.db", false); err != nil {
			return nil, err
		}
		if _, err := next.do("commit", "h"); err != nil {
			return nil, err
		}
		commits++
		var start time.Time
		died := make(chan time.Duration, 1)
		switch kind {
		case "kill":
			start = time.Now()
			owner.cmd.Process.Kill()
			owner.done = true
			go func(w *worker) {
				w.cmd.Wait()
				died <- time.Since(start)
			}(owner)
		case "exit":
			asked := time.Now()
			if _, err := owner.do("exit"); err != nil {
				return nil, err
			}
			owner.done = true
			if err := owner.cmd.Wait(); err != nil {
				return nil, fmt.Errorf("owner's exit: %w: %s", err, owner.stderr.String())
			}
			start = time.Now()
			died <- start.Sub(asked)
		}
		r, err := next.do("commit", "h")
		d := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("handover %d (%s): %w", i, kind, err)
		}
		ends[kind] = append(ends[kind], <-died)
		if r.Role != "owner" {
			return nil, fmt.Errorf("handover %d (%s): the joined process committed as %s, not as the owner", i, kind, r.Role)
		}
		commits++
		times[kind] = append(times[kind], d)
		owner.stop()
		owner = next
	}
	// No acknowledged commit was lost across the handovers.
	r, err := owner.do("count", "h", "SELECT count(*) FROM t")
	if err != nil {
		return nil, err
	}
	if r.Count != int64(commits) {
		return nil, fmt.Errorf("handover: %d commits acknowledged, the table holds %d rows", commits, r.Count)
	}
	// For scale: a process that opens the directory with no owner there,
	// as the one taking over does (the lock, Pebble, the socket).
	var opens []time.Duration
	for range p.cfg.Handovers {
		if _, err := owner.do("exit"); err != nil {
			return nil, err
		}
		owner.done = true
		if err := owner.cmd.Wait(); err != nil {
			return nil, fmt.Errorf("owner's exit: %w: %s", err, owner.stderr.String())
		}
		if owner, err = p.start("owner"); err != nil {
			return nil, err
		}
		r, err := owner.do("open", "h", "cambium", dir, "handover.db")
		if err != nil {
			return nil, err
		}
		if r.Role != "owner" {
			return nil, fmt.Errorf("a process alone on %s opened it as %s", dir, r.Role)
		}
		opens = append(opens, r.Elapsed)
	}
	slices.Sort(opens)
	var results []Result
	for _, kind := range kinds {
		ds := slices.Clone(times[kind])
		slices.Sort(ds)
		med := ds[len(ds)/2]
		f := figures(1, med)
		f.Latency, f.LatencyMin, f.LatencyMax = med, ds[0], ds[len(ds)-1]
		end := slices.Clone(ends[kind])
		slices.Sort(end)
		endNote := map[string]string{
			"kill": "the killed owner's process ended a median %s after the signal (within the handover)",
			"exit": "the owner took a median %s from its exit request to its end, closing its store (before the handover's clock starts)",
		}[kind]
		what := map[string]string{
			"kill": "from SIGKILL of the owner",
			"exit": "from the owner's clean exit (its process ended)",
		}[kind]
		results = append(results, Result{
			Workload: "processes/handover-" + kind,
			Cambium:  f,
			Notes: []string{fmt.Sprintf("%s to the next commit of a process that had joined it (it takes the data directory over: the lock, Pebble, the socket); median of %d handovers, the smallest and largest in brackets; no baseline (a plain SQLite file has no owner)",
				what, len(ds)), fmt.Sprintf(endNote, end[len(end)/2].Round(100*time.Microsecond)),
				fmt.Sprintf("for scale, a process opening the data directory with no owner there, and its first statement, took a median %s (%d opens)", opens[len(opens)/2].Round(100*time.Microsecond), len(opens))},
		})
	}
	return results, nil
}

// worker is a worker process, steered through its standard input and
// output.
type worker struct {
	name   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr lockedBuffer
	done   bool
}

// lockedBuffer is a worker's standard error: written by the goroutine
// that copies it, read when a request fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// workerReply is a worker's answer to one request.
type workerReply struct {
	Err     string        `json:"err,omitempty"`
	Role    string        `json:"role,omitempty"` // open, commit: owner, joined or plain
	Elapsed time.Duration `json:"elapsed_ns,omitempty"`
	Count   int64         `json:"count,omitempty"`
	Tries   int           `json:"tries,omitempty"`
	// Reads and Hits are the handle's volume's page reads in this
	// process and those its cache answered (PRAGMA cambium_stats).
	Reads int64 `json:"page_reads,omitempty"`
	Hits  int64 `json:"cache_hits,omitempty"`
}

// do sends one request and waits for its answer.
func (w *worker) do(args ...string) (workerReply, error) {
	var r workerReply
	b, _ := json.Marshal(args)
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return r, fmt.Errorf("worker %s: %s: %w: %s", w.name, args[0], err, w.stderr.String())
	}
	if !w.out.Scan() {
		return r, fmt.Errorf("worker %s: %s: no answer (%v): %s", w.name, args[0], w.out.Err(), w.stderr.String())
	}
	if err := json.Unmarshal(w.out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("worker %s: %s: answer %q: %w", w.name, args[0], w.out.Text(), err)
	}
	if r.Err != "" {
		return r, fmt.Errorf("worker %s: %s: %s", w.name, args[0], r.Err)
	}
	return r, nil
}

// stop ends the worker: the end of its input tells it to close its
// databases and exit; one that has not within 10 seconds is killed.
func (w *worker) stop() {
	if w.done {
		return
	}
	w.done = true
	w.in.Close()
	t := time.AfterFunc(10*time.Second, func() { w.cmd.Process.Kill() })
	w.cmd.Wait()
	t.Stop()
}

// ServeProcessWorker is a worker process of the processes workload: it
// answers requests read from r, one JSON array of strings per line, with
// one JSON object per line on w, until it reads ["exit"] or r ends. It is
// the CLI's internal `cambium bench-worker`; nothing else should run it.
//
// Requests name a database handle of the worker:
//
//	open H cambium DIR VOLUME [PRAGMA...]  a volume through the Go VFS, timed
//	open H plain DIR FILE [PRAGMA...]      a plain file, timed
//	reference H ROWS        build the reference table and a log table
//	exec H SQL              run a statement
//	count H SQL             run a query of one integer
//	scan H                  read every row of the reference table
//	reads H N ROWS SEED     N point SELECTs by id, timed
//	writes H N ROWS SEED    N small write transactions, timed
//	commit H                one insert into t, tried again until it succeeds
//	stats H                 the volume's page reads and cache hits here
//	close H
//	profile FILE            start a CPU profile into FILE ("": stop it)
//	exit
func ServeProcessWorker(ctx context.Context, r io.Reader, w io.Writer) error {
	sw := &processWorker{ctx: ctx, dbs: map[string]*sideDB{}}
	defer sw.closeAll()
	in := bufio.NewScanner(r)
	in.Buffer(nil, 1<<20)
	enc := json.NewEncoder(w)
	for in.Scan() {
		var args []string
		if err := json.Unmarshal(in.Bytes(), &args); err != nil || len(args) == 0 {
			return fmt.Errorf("bench-worker: request %q: %v", in.Text(), err)
		}
		if args[0] == "exit" {
			sw.closeAll()
			return enc.Encode(workerReply{})
		}
		rep, err := sw.handle(args)
		if err != nil {
			rep = workerReply{Err: err.Error()}
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return in.Err()
}

// sideDB is a worker's database handle.
type sideDB struct {
	db   *sql.DB
	dir  string
	kind string
}

type processWorker struct {
	ctx  context.Context
	dbs  map[string]*sideDB
	prof *os.File
}

func (sw *processWorker) closeAll() {
	for h, d := range sw.dbs {
		d.db.Close()
		delete(sw.dbs, h)
	}
	if sw.prof != nil {
		pprof.StopCPUProfile()
		sw.prof.Close()
		sw.prof = nil
	}
}

// role says whether this process owns data directory dir: the lock file
// names the process that holds it.
func role(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "cambium.lock"))
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		return "owner"
	}
	return "joined"
}

func (sw *processWorker) handle(args []string) (workerReply, error) {
	var rep workerReply
	want := map[string]int{"stats": 2, "open": 5, "reference": 3, "exec": 3, "count": 3, "scan": 2, "reads": 5, "writes": 5, "commit": 2, "close": 2, "profile": 2}
	n, ok := want[args[0]]
	if !ok {
		return rep, fmt.Errorf("unknown request %q", args[0])
	}
	if len(args) < n {
		return rep, fmt.Errorf("%s: %d arguments, want %d", args[0], len(args)-1, n-1)
	}
	if args[0] == "profile" {
		return rep, sw.profile(args[1])
	}
	if args[0] == "open" {
		return sw.open(args[1], args[2], args[3], args[4], args[5:])
	}
	d := sw.dbs[args[1]]
	if d == nil {
		return rep, fmt.Errorf("%s: no handle %q", args[0], args[1])
	}
	nums := make([]int, 0, 3)
	if args[0] == "reads" || args[0] == "writes" || args[0] == "reference" {
		for _, a := range args[2:] {
			v, err := strconv.Atoi(a)
			if err != nil {
				return rep, fmt.Errorf("%s: %q: want a number", args[0], a)
			}
			nums = append(nums, v)
		}
	}
	switch args[0] {
	case "reference":
		if err := reference(d.db, nums[0]); err != nil {
			return rep, err
		}
		_, err := d.db.Exec("CREATE TABLE log(id INTEGER PRIMARY KEY, item INTEGER, at INTEGER)")
		return rep, err
	case "exec":
		_, err := d.db.ExecContext(sw.ctx, args[2])
		return rep, err
	case "count":
		err := d.db.QueryRowContext(sw.ctx, args[2]).Scan(&rep.Count)
		return rep, err
	case "stats":
		var text string
		if err := d.db.QueryRowContext(sw.ctx, "PRAGMA cambium_stats").Scan(&text); err != nil {
			return rep, err
		}
		var st struct {
			PageReads int64 `json:"page_reads"`
			CacheHits int64 `json:"cache_hits"`
		}
		err := json.Unmarshal([]byte(text), &st)
		rep.Reads, rep.Hits = st.PageReads, st.CacheHits
		return rep, err
	case "scan":
		var n int64
		return rep, d.db.QueryRowContext(sw.ctx, "SELECT sum(length(body)) FROM items").Scan(&n)
	case "reads":
		var err error
		rep.Elapsed, err = pointReads(sw.ctx, d.db, nums[0], nums[1], uint64(nums[2]))
		return rep, err
	case "writes":
		var err error
		rep.Elapsed, err = smallWrites(sw.ctx, d.db, nums[0], nums[1], uint64(nums[2]))
		return rep, err
	case "commit":
		start := time.Now()
		for {
			rep.Tries++
			_, err := d.db.ExecContext(sw.ctx, "INSERT INTO t(at) VALUES (?)", time.Now().UnixNano())
			if err == nil {
				break
			}
			if time.Since(start) > time.Minute {
				return rep, fmt.Errorf("no commit in a minute, %d tries: %w", rep.Tries, err)
			}
		}
		rep.Elapsed = time.Since(start)
		rep.Role = role(d.dir)
		return rep, nil
	case "close":
		delete(sw.dbs, args[1])
		return rep, d.db.Close()
	}
	return rep, nil
}

func (sw *processWorker) open(h, kind, dir, name string, pragmas []string) (workerReply, error) {
	var rep workerReply
	if old := sw.dbs[h]; old != nil {
		old.db.Close()
		delete(sw.dbs, h)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return rep, err
	}
	start := time.Now()
	var db *sql.DB
	var err error
	switch kind {
	case "cambium":
		db, err = openCambium(dir, name, "")
	case "plain":
		db, err = openFile(dir, name, "")
	default:
		return rep, fmt.Errorf("open: kind %q, want cambium or plain", kind)
	}
	if err != nil {
		return rep, err
	}
	// One connection, kept open between requests: it keeps the data
	// directory open in this process.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	for _, p := range append([]string{"SELECT 1"}, pragmas...) {
		if _, err := db.ExecContext(sw.ctx, p); err != nil {
			db.Close()
			return rep, fmt.Errorf("open %s: %s: %w", name, p, err)
		}
	}
	rep.Elapsed = time.Since(start)
	sw.dbs[h] = &sideDB{db: db, dir: dir, kind: kind}
	rep.Role = "plain"
	if kind == "cambium" {
		rep.Role = role(dir)
	}
	return rep, nil
}

func (sw *processWorker) profile(path string) error {
	if sw.prof != nil {
		pprof.StopCPUProfile()
		err := sw.prof.Close()
		sw.prof = nil
		if err != nil || path == "" {
			return err
		}
	}
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	sw.prof = f
	return nil
}
