package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// LoadableConfig configures the loadable workload: libcambium.so as a new
// user meets it, in the stock sqlite3 shell and in Python's sqlite3 module,
// each process timed whole (start, loading the extension, opening the
// store, the statements, exit), against the same program on a plain file.
type LoadableConfig struct {
	Dir string // scratch directory
	// Lib is the built extension, build/libcambium.so (make extension).
	Lib string
	// SQLite and Python are the hosts: default /usr/bin/sqlite3 and
	// /usr/bin/python3, whose sqlite3 module can load extensions (a
	// pyenv build often cannot). A host that is missing is a note.
	SQLite, Python string
	Transactions   int // one-row autocommit INSERTs per process, default 3,000
	Rows           int // rows of the read table, default 100,000
	Reads          int // indexed point SELECTs per process, default 200,000
	Opens          int // processes per round of the open workload, default 10
	// Rounds is how many times each side runs each workload, taking
	// turns to go first; the median round is reported, with the spread
	// of the per-round ratio (default 5).
	Rounds int
}

// loadableTargets are issue 16's goals: the ratio of rates (for open, the
// plain shell's time over Cambium's: within 2x is 0.5x).
var loadableTargets = map[string]float64{"normal": 1.0, "full": 2.5, "read": 1.0, "open": 0.5}

// RunLoadable measures, in each host: small write transactions (one-row
// autocommit INSERTs, each process starting on new files) at
// synchronous=NORMAL against a plain file in WAL + NORMAL and at FULL
// against the rollback journal + FULL; indexed point SELECTs on a
// 100,000-row table; and a process that loads the extension and runs one
// statement on an existing volume against one that opens the plain file.
func RunLoadable(ctx context.Context, cfg LoadableConfig) ([]Result, error) {
	if cfg.SQLite == "" {
		cfg.SQLite = "/usr/bin/sqlite3"
	}
	if cfg.Python == "" {
		cfg.Python = "/usr/bin/python3"
	}
	if cfg.Transactions == 0 {
		cfg.Transactions = 3000
	}
	if cfg.Rows == 0 {
		cfg.Rows = 100000
	}
	if cfg.Reads == 0 {
		cfg.Reads = 200000
	}
	if cfg.Opens == 0 {
		cfg.Opens = 10
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 5
	}
	lib, err := filepath.Abs(cfg.Lib)
	if err == nil {
		_, err = os.Stat(lib)
	}
	if err != nil {
		return []Result{{Workload: "loadable", Notes: []string{fmt.Sprintf("not measured: no extension (%v); build it with make extension", err)}}}, nil
	}
	cfg.Lib = strings.TrimSuffix(lib, ".so")
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	// The read table, built once on each side outside the timings.
	schema := fmt.Sprintf(`CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM c WHERE i < %d)
INSERT INTO t(k, v) SELECT i * 7919 %% 1000003, printf('value-%%08d-%%s', i, hex(randomblob(20))) FROM c;
COMMIT;
CREATE INDEX t_k ON t(k);
`, cfg.Rows-1)
	var results []Result
	for _, h := range []loadableHost{shellHost{cfg}, pythonHost{cfg}} {
		if _, err := os.Stat(h.path()); err != nil {
			results = append(results, Result{Workload: "loadable/" + h.name(), Notes: []string{fmt.Sprintf("not measured: %v", err)}})
			continue
		}
		dir := filepath.Join(cfg.Dir, h.name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return results, err
		}
		for _, s := range []loadableSide{{dir: dir, plain: "plain-read.db"}, {dir: dir, volume: "read.db", cambium: true}} {
			if err := h.exec(ctx, s, schema); err != nil {
				return results, fmt.Errorf("%s: build the read table: %w", h.name(), err)
			}
		}
		rs, err := runLoadableHost(ctx, cfg, h, dir)
		results = append(results, rs...)
		if err != nil {
			return results, fmt.Errorf("%s: %w", h.name(), err)
		}
	}
	return results, nil
}

// loadableSide is one side of a comparison: a plain file, or a volume in
// data directory dir/cambium (cambium set).
type loadableSide struct {
	dir     string
	plain   string // file name in dir
	volume  string
	cambium bool
}

func (s loadableSide) data() string { return filepath.Join(s.dir, "cambium") }

// A loadableHost runs statements in a new process of one program.
type loadableHost interface {
	name() string
	path() string
	// exec runs a script of statements on side s, failing on any error.
	exec(ctx context.Context, s loadableSide, script string) error
	// writes runs n one-row autocommit INSERTs into a new table w after
	// the pragmas, and returns the process's time.
	writes(ctx context.Context, s loadableSide, pragmas []string, n int) (time.Duration, error)
	// reads runs the point SELECTs of pointReadKeys and returns the
	// process's time.
	reads(ctx context.Context, s loadableSide, n, rows int) (time.Duration, error)
}

func runLoadableHost(ctx context.Context, cfg LoadableConfig, h loadableHost, dir string) ([]Result, error) {
	type pair struct{ cambium, plain time.Duration }
	var (
		rounds  = map[string][]pair{}
		ops     = map[string]int{"normal": cfg.Transactions, "full": cfg.Transactions, "read": cfg.Reads, "open": cfg.Opens}
		kinds   = []string{"normal", "full", "read", "open"}
		volRead = loadableSide{dir: dir, volume: "read.db", cambium: true}
		plRead  = loadableSide{dir: dir, plain: "plain-read.db"}
	)
	// measure runs one side of one kind in round i.
	measure := func(kind string, cambium bool, i int) (time.Duration, error) {
		switch kind {
		case "normal", "full":
			s := loadableSide{dir: filepath.Join(dir, fmt.Sprintf("%s-%d", kind, i)), plain: "w.db", volume: "w.db", cambium: cambium}
			if err := os.MkdirAll(s.dir, 0o755); err != nil {
				return 0, err
			}
			pragmas := map[string][]string{"normal": {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"}, "full": {"PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL"}}[kind]
			if cambium {
				pragmas = map[string][]string{"normal": {"PRAGMA synchronous=NORMAL"}, "full": {"PRAGMA synchronous=FULL"}}[kind]
			}
			d, err := h.writes(ctx, s, pragmas, cfg.Transactions)
			if err != nil {
				return d, err
			}
			// Every transaction is there: abs() of the smallest integer
			// fails the process otherwise.
			if err := h.exec(ctx, s, fmt.Sprintf("SELECT CASE WHEN (SELECT count(*) FROM w) = %d THEN 1 ELSE abs(-9223372036854775807 - 1) END;", cfg.Transactions)); err != nil {
				return d, fmt.Errorf("table w does not hold %d rows: %w", cfg.Transactions, err)
			}
			return d, os.RemoveAll(s.dir)
		case "read":
			s := plRead
			if cambium {
				s = volRead
			}
			return h.reads(ctx, s, cfg.Reads, cfg.Rows)
		}
		s := plRead
		if cambium {
			s = volRead
		}
		start := time.Now()
		for range cfg.Opens {
			if err := h.exec(ctx, s, "SELECT v FROM t WHERE k = 7919;"); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	for _, kind := range kinds {
		for i := range cfg.Rounds {
			var p pair
			order := []bool{true, false}
			if i%2 == 1 {
				order = []bool{false, true}
			}
			for _, cambium := range order {
				d, err := measure(kind, cambium, i)
				if err != nil {
					return nil, fmt.Errorf("%s (cambium %v), round %d: %w", kind, cambium, i, err)
				}
				if cambium {
					p.cambium = d
				} else {
					p.plain = d
				}
			}
			rounds[kind] = append(rounds[kind], p)
		}
	}
	baselines := map[string]string{
		"normal": "plain file, WAL, synchronous=NORMAL",
		"full":   "plain file, rollback journal, synchronous=FULL",
		"read":   "plain file",
		"open":   "plain file",
	}
	var results []Result
	for _, kind := range kinds {
		var ours, theirs []Figures
		var ratios []float64
		for _, p := range rounds[kind] {
			ours = append(ours, figures(ops[kind], p.cambium))
			theirs = append(theirs, figures(ops[kind], p.plain))
			ratios = append(ratios, p.plain.Seconds()/p.cambium.Seconds())
		}
		res := Result{Workload: "loadable/" + h.name() + "/" + kind, Cambium: medianRound(ours)}
		res.compare(baselines[kind], medianRound(theirs), loadableTargets[kind])
		c := &res.Comparisons[0]
		slices.Sort(ratios)
		c.Ratio, c.RatioMin, c.RatioMax = ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1]
		res.Notes = append(res.Notes, loadableNote(kind, cfg, len(ratios)))
		results = append(results, res)
	}
	return results, nil
}

func loadableNote(kind string, cfg LoadableConfig, rounds int) string {
	what := map[string]string{
		"normal": fmt.Sprintf("%d one-row autocommit INSERTs in one process on new files", cfg.Transactions),
		"full":   fmt.Sprintf("%d one-row autocommit INSERTs in one process on new files", cfg.Transactions),
		"read":   fmt.Sprintf("%d indexed point SELECTs in one process on a %d-row table", cfg.Reads, cfg.Rows),
		"open":   fmt.Sprintf("%d processes in a row, each loading the extension and running one statement on an existing volume", cfg.Opens),
	}[kind]
	return fmt.Sprintf("%s, timed with the process start; median of %d rounds, the sides taking turns to go first; the ratio is the median round's, its spread the smallest and largest", what, rounds)
}

// shellHost is the sqlite3 shell, fed a script on standard input.
type shellHost struct{ cfg LoadableConfig }

func (h shellHost) name() string { return "shell" }
func (h shellHost) path() string { return h.cfg.SQLite }

func (h shellHost) prelude(s loadableSide) string {
	if s.cambium {
		return fmt.Sprintf(".bail on\n.load %s\n.open file:%s?vfs=cambium&dir=%s\n", h.cfg.Lib, s.volume, s.data())
	}
	return fmt.Sprintf(".bail on\n.open %s\n", filepath.Join(s.dir, s.plain))
}

func (h shellHost) run(ctx context.Context, script *bytes.Buffer) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, h.cfg.SQLite, "-batch")
	cmd.Stdin = script
	return timeProcess(cmd, "sqlite3")
}

// timeProcess runs cmd and returns how long it took, failing if it failed
// or wrote anything to standard error.
func timeProcess(cmd *exec.Cmd, name string) (time.Duration, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil || stderr.Len() > 0 {
		return d, fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return d, nil
}

func (h shellHost) exec(ctx context.Context, s loadableSide, script string) error {
	_, err := h.run(ctx, bytes.NewBufferString(h.prelude(s)+script))
	return err
}

func (h shellHost) writes(ctx context.Context, s loadableSide, pragmas []string, n int) (time.Duration, error) {
	var b bytes.Buffer
	b.WriteString(h.prelude(s))
	for _, p := range pragmas {
		fmt.Fprintf(&b, "%s;\n", p)
	}
	b.WriteString(".output /dev/null\nCREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT);\n")
	for i := range n {
		fmt.Fprintf(&b, "INSERT INTO w(v) VALUES ('%s');\n", writeValue(i))
	}
	return h.run(ctx, &b)
}

func (h shellHost) reads(ctx context.Context, s loadableSide, n, rows int) (time.Duration, error) {
	var b bytes.Buffer
	b.WriteString(h.prelude(s) + ".output /dev/null\n")
	for _, k := range pointReadKeys(n, rows) {
		fmt.Fprintf(&b, "SELECT v FROM t WHERE k = %d;\n", k)
	}
	return h.run(ctx, &b)
}

// writeValue is the i'th row's text, about 80 bytes.
func writeValue(i int) string {
	return fmt.Sprintf("w-%08d-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", i)
}

// pointReadKeys are n keys of the read table's index, in a fixed
// pseudo-random order.
func pointReadKeys(n, rows int) []int {
	keys := make([]int, n)
	x := uint64(1)
	for i := range keys {
		x = x*6364136223846793005 + 1442695040888963407
		keys[i] = int((x>>33)%uint64(rows)) * 7919 % 1000003
	}
	return keys
}

// pythonHost is Python's sqlite3 module: one program that loads the
// extension through a first connection, then opens the database by URI.
type pythonHost struct{ cfg LoadableConfig }

func (h pythonHost) name() string { return "python" }
func (h pythonHost) path() string { return h.cfg.Python }

// pythonProgram is the whole program; argv: lib (empty for a plain file),
// database URI, mode (exec, writes, reads), then the mode's arguments.
const pythonProgram = `import sqlite3, sys
lib, uri, mode = sys.argv[1:4]
if lib:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(lib)
con = sqlite3.connect(uri, uri=True, isolation_level=None)
if mode == "exec":
    con.executescript(sys.argv[4])
elif mode == "writes":
    for p in sys.argv[5:]:
        con.execute(p).fetchall()
    con.execute("CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(int(sys.argv[4])):
        con.execute("INSERT INTO w(v) VALUES (?)", ("w-%08d-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" % i,))
else:
    for k in sys.stdin.read().split():
        con.execute("SELECT v FROM t WHERE k = ?", (int(k),)).fetchall()
con.close()
`

func (h pythonHost) uri(s loadableSide) (lib, uri string) {
	if s.cambium {
		return h.cfg.Lib, fmt.Sprintf("file:%s?vfs=cambium&dir=%s", s.volume, s.data())
	}
	return "", "file:" + filepath.Join(s.dir, s.plain)
}

func (h pythonHost) run(ctx context.Context, s loadableSide, stdin string, args ...string) (time.Duration, error) {
	lib, uri := h.uri(s)
	cmd := exec.CommandContext(ctx, h.cfg.Python, append([]string{"-c", pythonProgram, lib, uri}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	return timeProcess(cmd, "python3")
}

func (h pythonHost) exec(ctx context.Context, s loadableSide, script string) error {
	_, err := h.run(ctx, s, "", "exec", script)
	return err
}

func (h pythonHost) writes(ctx context.Context, s loadableSide, pragmas []string, n int) (time.Duration, error) {
	return h.run(ctx, s, "", append([]string{"writes", fmt.Sprint(n)}, pragmas...)...)
}

func (h pythonHost) reads(ctx context.Context, s loadableSide, n, rows int) (time.Duration, error) {
	var b strings.Builder
	for _, k := range pointReadKeys(n, rows) {
		fmt.Fprintf(&b, "%d\n", k)
	}
	return h.run(ctx, s, b.String(), "reads")
}
