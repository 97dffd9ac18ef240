package bench

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// reference builds the reference table of BENCHMARKS.md, at rows rows:
// items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB), 960-byte random
// bodies.
func reference(db *sql.DB, rows int) error { return referenceBodies(db, rows, false) }

// PointReadConfig configures the pointread workload (W6): indexed point
// queries on a warm database.
type PointReadConfig struct {
	Dir     string // scratch directory
	Rows    int    // default 50,000 (the reference database, ~51 MB)
	Queries int    // default 200,000
}

// RunPointRead measures point queries by primary key through one
// connection and a prepared statement, on Cambium and on a plain file with
// the same driver, after a warm-up that reads every row.
func RunPointRead(ctx context.Context, cfg PointReadConfig) (Result, error) {
	if cfg.Rows == 0 {
		cfg.Rows = 50000
	}
	if cfg.Queries == 0 {
		cfg.Queries = 200000
	}
	run := func(db *sql.DB) (Figures, error) {
		defer db.Close()
		db.SetMaxOpenConns(1)
		if err := reference(db, cfg.Rows); err != nil {
			return Figures{}, err
		}
		var warm int64
		if err := db.QueryRow("SELECT sum(length(body)) FROM items").Scan(&warm); err != nil {
			return Figures{}, err
		}
		d, err := pointReads(ctx, db, cfg.Queries, cfg.Rows, 0)
		if err != nil {
			return Figures{}, err
		}
		return figures(cfg.Queries, d), nil
	}
	res := Result{Workload: "pointread"}
	db, err := openCambium(cfg.Dir+"/cambium", "pointread.db", "")
	if err != nil {
		return res, err
	}
	if res.Cambium, err = run(db); err != nil {
		return res, fmt.Errorf("cambium: %w", err)
	}
	if db, err = openFile(cfg.Dir, "pointread.sqlite", ""); err != nil {
		return res, err
	}
	base, err := run(db)
	if err != nil {
		return res, fmt.Errorf("plain file: %w", err)
	}
	res.compare("plain file", base, 0.9)
	return res, nil
}

// CommitConfig configures the commit workload (W5): small write
// transactions, one after another.
type CommitConfig struct {
	Dir          string // scratch directory
	Transactions int    // per round, default 1,000
	Rows         int    // table size, default 10,000
	// Rounds is how many times each side runs the workload, each time in
	// new files, Cambium and its baseline taking turns to go first; the
	// median round of each side is reported (default 5). One round of
	// 1,000 transactions takes some 40 ms, short enough that one stray
	// burst of other work on the machine can move a single round by 15%.
	Rounds int
}

// RunCommit measures small write transactions (one UPDATE and one INSERT
// each) at the two durability classes, each against the plain-file
// baseline of the same class: Cambium with synchronous=NORMAL (survives a
// process crash, not a power loss) against WAL with synchronous=NORMAL,
// and Cambium with synchronous=FULL (fsync per commit) against the rollback
// journal with synchronous=FULL.
func RunCommit(ctx context.Context, cfg CommitConfig) ([]Result, error) {
	if cfg.Transactions == 0 {
		cfg.Transactions = 1000
	}
	if cfg.Rows == 0 {
		cfg.Rows = 10000
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 5
	}
	run := func(db *sql.DB, pragmas ...string) (Figures, error) {
		defer db.Close()
		db.SetMaxOpenConns(1)
		for _, p := range pragmas {
			if _, err := db.Exec(p); err != nil {
				return Figures{}, fmt.Errorf("%s: %w", p, err)
			}
		}
		if err := reference(db, cfg.Rows); err != nil {
			return Figures{}, err
		}
		if _, err := db.Exec("CREATE TABLE log(id INTEGER PRIMARY KEY, item INTEGER, at INTEGER)"); err != nil {
			return Figures{}, err
		}
		d, err := smallWrites(ctx, db, cfg.Transactions, cfg.Rows, 0)
		if err != nil {
			return Figures{}, err
		}
		return figures(cfg.Transactions, d), nil
	}
	var results []Result
	for _, class := range []struct {
		name, cambiumSync, baseName string
		basePragmas                 []string
	}{
		{"commit/normal", "PRAGMA synchronous=NORMAL", "plain file, WAL, synchronous=NORMAL",
			[]string{"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"}},
		{"commit/full", "PRAGMA synchronous=FULL", "plain file, rollback journal, synchronous=FULL",
			[]string{"PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL"}},
	} {
		kind := class.name[len("commit/"):]
		var ours, theirs []Figures
		cambium := func(round string) error {
			db, err := openCambium(filepath.Join(cfg.Dir, round, "cambium-"+kind), "commit.db", "")
			if err != nil {
				return err
			}
			f, err := run(db, class.cambiumSync)
			if err != nil {
				return fmt.Errorf("cambium %s: %w", class.name, err)
			}
			ours = append(ours, f)
			return nil
		}
		plain := func(round string) error {
			db, err := openFile(filepath.Join(cfg.Dir, round), "commit-"+kind+".sqlite", "")
			if err != nil {
				return err
			}
			f, err := run(db, class.basePragmas...)
			if err != nil {
				return fmt.Errorf("%s: %w", class.baseName, err)
			}
			theirs = append(theirs, f)
			return nil
		}
		for i := range cfg.Rounds {
			round := "round-" + strconv.Itoa(i)
			if err := os.MkdirAll(filepath.Join(cfg.Dir, round), 0o755); err != nil {
				return nil, err
			}
			first, second := cambium, plain
			if i%2 == 1 {
				first, second = plain, cambium
			}
			if err := first(round); err != nil {
				return nil, err
			}
			if err := second(round); err != nil {
				return nil, err
			}
			// The next round's files are new; these need not stay.
			if err := os.RemoveAll(filepath.Join(cfg.Dir, round)); err != nil {
				return nil, err
			}
		}
		res := Result{Workload: class.name, Cambium: medianRound(ours)}
		res.compare(class.baseName, medianRound(theirs), 1.0)
		if cfg.Rounds > 1 {
			// The ratio is the median of the rounds' ratios (each round
			// pairs the two sides, run one right after the other), with
			// their spread, as the loadable workload reports it.
			ratios := make([]float64, len(ours))
			for i := range ours {
				ratios[i] = ours[i].PerSec / theirs[i].PerSec
			}
			slices.Sort(ratios)
			c := &res.Comparisons[0]
			c.Ratio, c.RatioMin, c.RatioMax = ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1]
			res.Notes = append(res.Notes, fmt.Sprintf("%d transactions per round; each side's median of %d rounds, the two taking turns to go first; the ratio is the median of the rounds' ratios, their spread in brackets", cfg.Transactions, cfg.Rounds))
		}
		results = append(results, res)
	}
	return results, nil
}

// medianRound returns the round of median elapsed time.
func medianRound(rounds []Figures) Figures {
	sorted := slices.SortedFunc(slices.Values(rounds), func(a, b Figures) int { return cmp.Compare(a.Elapsed, b.Elapsed) })
	return sorted[len(sorted)/2]
}

// pointReads runs n point SELECTs by id on the reference table of rows
// rows, through a prepared statement, and returns their time.
func pointReads(ctx context.Context, db *sql.DB, n, rows int, seed uint64) (time.Duration, error) {
	stmt, err := db.PrepareContext(ctx, "SELECT qty, length(body) FROM items WHERE id = ?")
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	rng := rand.New(rand.NewPCG(1, 2+seed))
	var qty, size int64
	start := time.Now()
	for range n {
		if err := stmt.QueryRowContext(ctx, 1+rng.IntN(rows)).Scan(&qty, &size); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// smallWrites runs n write transactions, each an UPDATE of a random row of
// the reference table of rows rows and an INSERT into log, and returns
// their time.
func smallWrites(ctx context.Context, db *sql.DB, n, rows int, seed uint64) (time.Duration, error) {
	rng := rand.New(rand.NewPCG(3, 4+seed))
	start := time.Now()
	for i := range n {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		id := 1 + rng.IntN(rows)
		if _, err := tx.Exec("UPDATE items SET qty = qty + 1 WHERE id = ?", id); err != nil {
			tx.Rollback()
			return 0, err
		}
		if _, err := tx.Exec("INSERT INTO log(item, at) VALUES (?, ?)", id, i); err != nil {
			tx.Rollback()
			return 0, err
		}
		if err := tx.Commit(); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}
