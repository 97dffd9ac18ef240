package segment

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Realistic page images come from real SQLite databases, built with the
// sqlite3 shell (make test installs it), in the shape of the reference
// workload in BENCHMARKS.md: items(id INTEGER PRIMARY KEY, qty INTEGER,
// body BLOB) plus an index on qty.

// dbKind selects the body column's content.
type dbKind string

const (
	randomBodies dbKind = "random" // 960 random bytes: incompressible
	textBodies   dbKind = "text"   // about 960 bytes of varied text: compressible
)

var (
	dbCacheMu sync.Mutex
	dbCache   = map[string][][]byte{}
)

// sqlitePages returns the pages of a database of rows rows, built once per
// test binary for each (kind, rows, pageSize).
func sqlitePages(tb testing.TB, kind dbKind, rows, pageSize int) [][]byte {
	tb.Helper()
	key := fmt.Sprintf("%s/%d/%d", kind, rows, pageSize)
	dbCacheMu.Lock()
	defer dbCacheMu.Unlock()
	if pages, ok := dbCache[key]; ok {
		return pages
	}
	shell, err := exec.LookPath("sqlite3")
	if err != nil {
		tb.Fatalf("the sqlite3 shell is needed to build test databases (make test installs it): %v", err)
	}
	body := "randomblob(960)"
	setup := ""
	if kind == textBodies {
		// Random sequences of common words: about as compressible as
		// English prose, page by page.
		setup = `CREATE TEMP TABLE words(w TEXT);
INSERT INTO words VALUES ('the'),('of'),('and'),('to'),('in'),('is'),('you'),('that'),('it'),('he'),
('was'),('for'),('on'),('are'),('as'),('with'),('his'),('they'),('at'),('be'),('this'),('have'),('from'),
('or'),('one'),('had'),('by'),('word'),('but'),('not'),('what'),('all'),('were'),('we'),('when'),('your'),
('can'),('said'),('there'),('use'),('an'),('each'),('which'),('she'),('do'),('how'),('their'),('if'),
('will'),('up'),('other'),('about'),('out'),('many'),('then'),('them'),('these'),('so'),('some'),('her'),
('would'),('make'),('like'),('him'),('into'),('time'),('has'),('look'),('two'),('more'),('write'),('go'),
('see'),('number'),('no'),('way'),('could'),('people'),('my'),('than'),('first'),('water'),('been'),
('call'),('who'),('oil'),('its'),('now'),('find'),('long'),('down'),('day'),('did'),('get'),('come'),
('made'),('may'),('part'),('order'),('invoice'),('customer'),('shipped'),('pending'),('refund');
`
		// One correlated scalar subquery a word, so each row draws anew.
		word := "(SELECT w FROM words WHERE rowid = 1 + abs(random() + n.id * 0) % (SELECT count(*) FROM words))"
		body = "substr(" + strings.Repeat(word+" || ' ' || ", 190) + "'', 1, 960)"
	}
	dir := tb.TempDir()
	path := filepath.Join(dir, "ref.db")
	sql := fmt.Sprintf(`PRAGMA page_size=%d;
%sCREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB);
WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id+1 FROM n WHERE id < %d)
INSERT INTO items SELECT id, abs(random()) %% 1000, %s FROM n;
CREATE INDEX items_qty ON items(qty);
`, pageSize, setup, rows, body)
	cmd := exec.Command(shell, path)
	cmd.Stdin = strings.NewReader(sql)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s database: %v\n%s", kind, err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(data)%pageSize != 0 || len(data) == 0 {
		tb.Fatalf("database is %d bytes, not a whole number of %d-byte pages", len(data), pageSize)
	}
	var pages [][]byte
	for off := 0; off < len(data); off += pageSize {
		pages = append(pages, data[off:off+pageSize])
	}
	dbCache[key] = pages
	return pages
}
