package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"

	_ "github.com/cambiumdb/cambium/extension/govfs" // the cambium VFS
)

func demoCommand(g *globals) *command {
	var rows int
	return &command{
		name:    "demo",
		summary: "the end-to-end story: a writer, a lazy replica, a pull, time travel",
		doc: `Tells Cambium's story with real SQL through the Go VFS, in one process with two
data directories under a temporary directory, and an object store in a local
directory there too (or --remote / CAMBIUM_REMOTE when set; the demo's volume
is then left in it, under a unique name):

  1. a writer creates a database of --rows orders and pushes it;
  2. a replica with an empty data directory opens it and answers queries,
     downloading only the pages they read;
  3. the writer changes some orders and pushes;
  4. the replica pulls (metadata only) and sees the change;
  5. the replica reads the old version (version=N): time travel;
  6. the cambium commands on the replica's data directory.

The temporary directory is removed at the end.`,
		minArgs: 0, maxArgs: 0,
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&rows, "rows", 20000, "orders in the database (about 1 kB each)")
		},
		run: func(ctx context.Context, _ []string) error {
			if rows < 100 {
				return usagef("--rows %d: want at least 100", rows)
			}
			return runDemo(ctx, g, rows)
		},
	}
}

// demo narrates and runs one step at a time.
type demo struct {
	ctx context.Context
	w   io.Writer
	err error
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.w, format+"\n", args...)
}

// exec runs statements, showing them as a shell would.
func (d *demo) exec(db *sql.DB, show string, query string, args ...any) {
	if d.err != nil {
		return
	}
	if show != "" {
		d.say("   sql> %s", show)
	}
	if _, err := db.ExecContext(d.ctx, query, args...); err != nil {
		d.err = fmt.Errorf("%s: %w", firstLine(query), err)
	}
}

// row runs a query that returns one row, showing it when show is true.
func (d *demo) row(db *sql.DB, show bool, query string, dest ...any) {
	if d.err != nil {
		return
	}
	if show {
		d.say("   sql> %s", query)
	}
	if err := db.QueryRowContext(d.ctx, query).Scan(dest...); err != nil {
		d.err = fmt.Errorf("%s: %w", firstLine(query), err)
	}
}

// pragma runs a cambium_* pragma and decodes its JSON result.
func (d *demo) pragma(db *sql.DB, show bool, name string) map[string]float64 {
	var s string
	d.row(db, show, "PRAGMA "+name, &s)
	out := map[string]float64{}
	if d.err == nil {
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			// cambium_status has strings too; keep the numbers.
			var any map[string]any
			if err := json.Unmarshal([]byte(s), &any); err != nil {
				d.err = fmt.Errorf("PRAGMA %s: %q: %w", name, s, err)
			}
			for k, v := range any {
				if f, ok := v.(float64); ok {
					out[k] = f
				}
			}
		}
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func runDemo(ctx context.Context, g *globals, rows int) error {
	began := time.Now()
	tmp, err := os.MkdirTemp("", "cambium-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	writerDir, replicaDir := filepath.Join(tmp, "writer"), filepath.Join(tmp, "replica")
	remoteURL, name, where := g.remote, "demo/orders.db", "from --remote"
	if remoteURL == "" {
		remoteURL, where = "file://"+filepath.Join(tmp, "remote"), "a local directory"
	} else {
		suffix := make([]byte, 4)
		rand.Read(suffix)
		name = "demo/orders-" + hex.EncodeToString(suffix) + ".db"
	}
	dsn := func(dir string, extra string) string {
		return fmt.Sprintf("file:%s?vfs=cambium&dir=%s&remote=%s%s", name, url.QueryEscape(dir), url.QueryEscape(remoteURL), extra)
	}
	open := func(dir, extra string) (*sql.DB, error) {
		db, err := sql.Open("sqlite3", dsn(dir, extra))
		if err == nil {
			db.SetMaxOpenConns(1)
		}
		return db, err
	}
	d := &demo{ctx: ctx, w: g.stdout}
	d.say("Cambium demo: one SQLite database, a writer and a replica, an object store in between.")
	d.say("")
	d.say("  REMOTE=%s   (object store: %s)", remoteURL, where)
	d.say("  WRITER=%s   (the writer's data directory)", writerDir)
	d.say("  REPLICA=%s  (the replica's, empty)", replicaDir)
	d.say("  Both open file:%s?vfs=cambium&dir=$DIR&remote=$REMOTE through the Go VFS.", name)
	d.say("")

	// 1. The writer creates and fills the database, and pushes it.
	w, err := open(writerDir, "")
	if err != nil {
		return err
	}
	defer w.Close()
	d.say("1. The writer creates the database and fills it with %s orders.", count(rows))
	step := time.Now()
	d.exec(w, "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, item TEXT, qty INTEGER, status TEXT, note TEXT)",
		"CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, item TEXT, qty INTEGER, status TEXT, note TEXT)")
	d.exec(w, fmt.Sprintf("INSERT INTO orders SELECT ... (%s rows of about 1 kB)", count(rows)), `
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO orders SELECT i, 'customer-' || (i % 500), 'item-' || (i * 7 % 100), 1 + i % 9, 'new',
			hex(randomblob(450)) FROM n`, rows)
	d.exec(w, "CREATE INDEX orders_customer ON orders(customer)", "CREATE INDEX orders_customer ON orders(customer)")
	var pages, pageSize, v1 int64
	d.row(w, false, "PRAGMA page_count", &pages)
	d.row(w, false, "PRAGMA page_size", &pageSize)
	d.row(w, false, "PRAGMA cambium_version", &v1)
	dbBytes := pages * pageSize
	if d.err != nil {
		return d.err
	}
	d.say("   The database is %s (%s pages of %s bytes), volume version %d, written in %s.",
		size(dbBytes), count(pages), count(pageSize), v1, since(step))
	step = time.Now()
	push := d.pragma(w, true, "cambium_push")
	if d.err != nil {
		return d.err
	}
	d.say("   Pushed versions %d..%d as one remote commit: %s pages, %s uploaded in %s requests (%s).",
		int64(push["from"])+1, int64(push["to"]), count(int64(push["pages"])), size(int64(push["remote_bytes_written"])),
		count(int64(push["remote_requests"])), since(step))
	d.say("")

	// 2. A replica opens it with an empty data directory and queries.
	r, err := open(replicaDir, "")
	if err != nil {
		return err
	}
	defer r.Close()
	id := 12345
	if id > rows {
		id = rows/2 + 7
	}
	d.say("2. The replica opens the same volume with an empty data directory: it pulls the")
	d.say("   remote's commit (metadata only) and fetches pages as SQLite reads them.")
	step = time.Now()
	var customer, item, status string
	var qty int64
	d.row(r, true, fmt.Sprintf("SELECT customer, item, qty, status FROM orders WHERE id = %d", id), &customer, &item, &qty, &status)
	stats := d.pragma(r, false, "cambium_stats")
	if d.err != nil {
		return d.err
	}
	read1 := int64(stats["remote_bytes_read"])
	d.say("        -> %s | %s | %d | %s   (%s)", customer, item, qty, status, since(step))
	d.say("   It downloaded %s in %s requests (%s pages): %s of the %s database. (PRAGMA cambium_stats)",
		size(read1), count(int64(stats["remote_requests"])), count(int64(stats["pages_fetched"])), percent(read1, dbBytes), size(dbBytes))
	var n int64
	d.row(r, true, "SELECT count(*), sum(qty) FROM orders WHERE customer = 'customer-42'", &n, &qty)
	stats = d.pragma(r, false, "cambium_stats")
	if d.err != nil {
		return d.err
	}
	read2 := int64(stats["remote_bytes_read"])
	d.say("        -> %d orders, %d items", n, qty)
	d.say("   That indexed query read %s more; %s in all, %s of the database.", size(read2-read1), size(read2), percent(read2, dbBytes))
	d.say("")

	// 3. The writer changes some orders and pushes.
	d.say("3. The writer ships customer-42's orders and pushes.")
	step = time.Now()
	d.exec(w, "UPDATE orders SET status = 'shipped', qty = qty + 100 WHERE customer = 'customer-42'",
		"UPDATE orders SET status = 'shipped', qty = qty + 100 WHERE customer = 'customer-42'")
	push = d.pragma(w, true, "cambium_push")
	if d.err != nil {
		return d.err
	}
	v2 := int64(push["to"])
	d.say("   Version %d: pushed %s changed pages, %s in %s requests (%s).",
		v2, count(int64(push["pages"])), size(int64(push["remote_bytes_written"])), count(int64(push["remote_requests"])), since(step))
	d.say("")

	// 4. The replica pulls and sees the change.
	d.say("4. The replica pulls: it learns which pages changed, not their contents.")
	step = time.Now()
	pull := d.pragma(r, true, "cambium_pull")
	if d.err != nil {
		return d.err
	}
	d.say("   Version %d -> %d: %s pages changed; %s of metadata in %s requests (%s).",
		int64(pull["from"]), int64(pull["to"]), count(int64(pull["pages_changed"])), size(int64(pull["remote_bytes_read"])),
		count(int64(pull["remote_requests"])), since(step))
	before := d.pragma(r, false, "cambium_stats")["remote_bytes_read"]
	d.row(r, true, "SELECT count(*), sum(qty), min(status) FROM orders WHERE customer = 'customer-42'", &n, &qty, &status)
	after := d.pragma(r, false, "cambium_stats")
	if d.err != nil {
		return d.err
	}
	total := int64(after["remote_bytes_read"])
	d.say("        -> %d orders, %d items, %s", n, qty, status)
	d.say("   Reading the changed orders fetched %s; the replica has downloaded %s in all, %s of the database.",
		size(total-int64(before)), size(total), percent(total, dbBytes))
	d.say("")

	// 5. Time travel.
	d.say("5. Time travel: the replica opens version %d read-only (version=%d in the URI).", v1, v1)
	old, err := open(replicaDir, fmt.Sprintf("&version=%d", v1))
	if err != nil {
		return err
	}
	defer old.Close()
	var oldVersion int64
	d.row(old, true, "SELECT count(*), sum(qty), min(status) FROM orders WHERE customer = 'customer-42'", &n, &qty, &status)
	d.row(old, false, "PRAGMA cambium_version", &oldVersion)
	if d.err != nil {
		return d.err
	}
	d.say("        -> %d orders, %d items, %s   (version %d, before the writer's update)", n, qty, status, oldVersion)
	d.say("")

	// 6. The CLI on the replica's data directory, once the VFS let go of it.
	old.Close()
	r.Close()
	w.Close()
	d.say("6. The same replica through the cambium command:")
	for _, args := range [][]string{
		{"--dir", replicaDir, "info", name},
		{"--dir", replicaDir, "log", name},
		{"--dir", replicaDir, "--remote", remoteURL, "verify", name},
	} {
		shown := strings.Join(args, " ")
		shown = strings.ReplaceAll(shown, replicaDir, "$REPLICA")
		shown = strings.ReplaceAll(shown, remoteURL, "$REMOTE")
		d.say("   $ cambium %s", shown)
		var out strings.Builder
		if code := run(ctx, args, &out, g.stderr); code != 0 {
			return fmt.Errorf("cambium %s: exit status %d", shown, code)
		}
		for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
			d.say("     %s", line)
		}
	}
	d.say("")
	if g.remote != "" {
		d.say("Done in %s. The demo's volume %s stays in %s; its data directories are removed.", since(began), name, remoteURL)
	} else {
		d.say("Done in %s; removed %s.", since(began), tmp)
	}
	return nil
}

func since(t time.Time) string {
	d := time.Since(t)
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
