package main

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestLibrary_Exports: the library's dynamic symbol table holds its entry
// points and nothing else of Go's or cgo's (what nm -D --defined-only lists).
func TestLibrary_Exports(t *testing.T) {
	f, err := elf.Open(libPath(t) + ".so")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	var defined []string
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF {
			defined = append(defined, s.Name)
		}
	}
	slices.Sort(defined)
	if want := []string{"sqlite3_cambium_init", "sqlite3_extension_init"}; !slices.Equal(defined, want) {
		if len(defined) > 12 {
			defined = append(defined[:12:12], fmt.Sprintf("... (%d in all)", len(defined)))
		}
		t.Errorf("defined dynamic symbols = %q, want %q", defined, want)
	}
}

// The 100,000 rows the volume tests write, and what they sum to.
const (
	rows      = 100000
	rowsSumN  = "35000350000" // sum of 7*i for i in 1..rows
	pointRow  = 54321
	pointText = "row-054321"
)

const insertRows = `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 100000)
INSERT INTO t SELECT i, printf('row-%06d', i), 7*i FROM c;
COMMIT;
CREATE INDEX t_n ON t(n);
`

// TestShell_Volume: the sqlite3 shell loads the extension (twice), writes
// 100,000 rows in one transaction to a volume, reads them back, and a new
// shell process sees the same data.
func TestShell_Volume(t *testing.T) {
	so := libPath(t)
	dir := filepath.Join(t.TempDir(), "data")
	cwd := t.TempDir()
	uri := volumeURI("shell.db", dir)

	r := runShell(t, cwd, hostEnv(), `.bail on
.load `+so+`
.load `+so+`
.print @vfslist
.vfslist
.open `+uri+`
`+insertRows+`
.print @count
SELECT count(*), sum(n) FROM t;
.print @point
SELECT v FROM t WHERE n = 7*`+strconv.Itoa(pointRow)+`;
.print @integrity
PRAGMA integrity_check;
.print @journal_mode
PRAGMA journal_mode;
.print @page_count
PRAGMA page_count;
.print @page_size
PRAGMA page_size;
.print @status
PRAGMA cambium_status;
.print @version
PRAGMA cambium_version;
.print @vfsname
.vfsname
`)
	if r.err != nil {
		t.Fatalf("sqlite3: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	s := sections(r.stdout)
	if n := strings.Count(strings.Join(s["vfslist"], "\n"), `"cambium"`); n != 1 {
		t.Errorf(".vfslist after loading twice lists cambium %d times, want once:\n%s", n, strings.Join(s["vfslist"], "\n"))
	}
	if got, want := one(t, s, "count"), strconv.Itoa(rows)+"|"+rowsSumN; got != want {
		t.Errorf("count, sum = %s, want %s", got, want)
	}
	if got := one(t, s, "point"); got != pointText {
		t.Errorf("point query = %q, want %q", got, pointText)
	}
	if got := one(t, s, "integrity"); got != "ok" {
		t.Errorf("integrity_check = %q", got)
	}
	// The extension set the connection's journal mode: the rollback
	// journal lives in the pager's memory.
	if got := one(t, s, "journal_mode"); got != "memory" {
		t.Errorf("journal_mode = %q, want memory", got)
	}
	if got := one(t, s, "vfsname"); got != "cambium" {
		t.Errorf(".vfsname = %q, want cambium", got)
	}
	pageCount, _ := strconv.Atoi(one(t, s, "page_count"))
	pageSize, _ := strconv.Atoi(one(t, s, "page_size"))
	st := parseStatus(t, one(t, s, "status"))
	if st.Volume != "shell.db" || st.PageCount != pageCount || st.PageSize != pageSize || st.Dir != dir || st.Version == 0 {
		t.Errorf("cambium_status = %+v, want volume shell.db, page_count %d, page_size %d, dir %s, a version", st, pageCount, pageSize, dir)
	}
	// rows of ~25 bytes: some hundreds of 4 KiB pages, not a handful.
	if pageCount < rows*20/pageSize {
		t.Errorf("page_count = %d for %d rows of %d-byte pages", pageCount, rows, pageSize)
	}
	if got := one(t, s, "version"); got != strconv.FormatUint(st.Version, 10) {
		t.Errorf("cambium_version = %s, cambium_status version = %d", got, st.Version)
	}
	// Nothing of the database is a file where the shell runs: no database,
	// no journal.
	if ents, _ := os.ReadDir(cwd); len(ents) != 0 {
		t.Errorf("the shell left files in its directory: %v", ents)
	}

	// A new process sees the same volume.
	r = runShell(t, cwd, hostEnv(), `.bail on
.load `+so+`
.open `+uri+`
.print @count
SELECT count(*), sum(n) FROM t;
.print @point
SELECT v FROM t WHERE id = `+strconv.Itoa(pointRow)+`;
.print @integrity
PRAGMA integrity_check;
.print @status
PRAGMA cambium_status;
`)
	if r.err != nil {
		t.Fatalf("sqlite3 (reopen): %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	s = sections(r.stdout)
	if got, want := one(t, s, "count"), strconv.Itoa(rows)+"|"+rowsSumN; got != want {
		t.Errorf("after reopening: count, sum = %s, want %s", got, want)
	}
	if got := one(t, s, "point"); got != pointText {
		t.Errorf("after reopening: point query = %q, want %q", got, pointText)
	}
	if got := one(t, s, "integrity"); got != "ok" {
		t.Errorf("after reopening: integrity_check = %q", got)
	}
	if st2 := parseStatus(t, one(t, s, "status")); st2.Version != st.Version || st2.PageCount != st.PageCount {
		t.Errorf("after reopening (reads only): status %+v, want version %d, page_count %d", st2, st.Version, st.PageCount)
	}
}

// TestShell_Errors: a bad URI parameter and an unknown cambium_ pragma
// fail with Cambium's message; journal_mode=WAL is answered with the mode
// in force, as SQLite answers it where WAL cannot be; other pragmas pass
// to SQLite.
func TestShell_Errors(t *testing.T) {
	so := libPath(t)
	dir := t.TempDir()
	r := runShell(t, "", hostEnv(), `.load `+so+`
.open `+volumeURI("bad.db", dir, "dri=oops")+`
.open `+volumeURI("good.db", dir)+`
CREATE TABLE x(a);
PRAGMA cambium_nope;
.print @wal
PRAGMA journal_mode=WAL;
PRAGMA no_such_sqlite_pragma;
.print @end
SELECT count(*) FROM x;
PRAGMA journal_mode;
`)
	for _, want := range []string{
		`unknown URI parameter "dri"`,
		"unknown pragma cambium_nope; Cambium knows cambium_version",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "no_such_sqlite_pragma") {
		t.Errorf("an unknown SQLite pragma failed; SQLite ignores those:\n%s", r.stderr)
	}
	if got := sections(r.stdout)["wal"]; !slices.Equal(got, []string{"memory"}) || strings.Contains(r.stderr, "unsupported") {
		t.Errorf("journal_mode=WAL answered %q, want memory and no error\nstderr:\n%s", got, r.stderr)
	}
	if got := sections(r.stdout)["end"]; !slices.Equal(got, []string{"0", "memory"}) {
		t.Errorf("after the errors: %q, want the table still empty and journal_mode memory\nstderr:\n%s", got, r.stderr)
	}
}

// TestShell_VacuumPageSize: PRAGMA page_size=N then VACUUM changes the
// page size of a volume that has pages, up and down, in the shell as with a
// plain file; the rows stay, a new process reads the new size, and
// version=N still reads the version before the change at the old size.
func TestShell_VacuumPageSize(t *testing.T) {
	so := libPath(t)
	dir := t.TempDir()
	uri := volumeURI("vac.db", dir)
	r := runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+uri+`
`+insertRows+`
.print @before
SELECT count(*), sum(n) FROM t;
PRAGMA page_size;
PRAGMA cambium_version;
PRAGMA page_size=16384;
VACUUM;
.print @big
PRAGMA page_size;
PRAGMA integrity_check;
SELECT count(*), sum(n) FROM t;
PRAGMA page_size=1024;
VACUUM;
UPDATE t SET n = n + 1 WHERE id = 1;
.print @small
PRAGMA page_size;
PRAGMA integrity_check;
SELECT count(*), sum(n) FROM t;
`)
	if r.err != nil {
		t.Fatalf("sqlite3: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	s := sections(r.stdout)
	sum := strconv.Itoa(rows) + "|" + rowsSumN
	if got := s["before"]; len(got) != 3 || got[0] != sum || got[1] != "4096" {
		t.Fatalf("before: %q, want %s, 4096 and a version", got, sum)
	}
	before := s["before"][2]
	if got, want := s["big"], []string{"16384", "ok", sum}; !slices.Equal(got, want) {
		t.Errorf("after page_size=16384 and VACUUM: %q, want %q", got, want)
	}
	sumAfter := strconv.Itoa(rows) + "|35000350001"
	if got, want := s["small"], []string{"1024", "ok", sumAfter}; !slices.Equal(got, want) {
		t.Errorf("after page_size=1024 and VACUUM: %q, want %q", got, want)
	}

	r = runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+uri+`
.print @reopen
SELECT count(*), sum(n) FROM t;
PRAGMA page_size;
PRAGMA integrity_check;
.open `+volumeURI("vac.db", dir, "version="+before)+`
.print @old
SELECT count(*), sum(n) FROM t;
PRAGMA page_size;
`)
	if r.err != nil {
		t.Fatalf("sqlite3 (reopen): %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	s = sections(r.stdout)
	if got, want := s["reopen"], []string{sumAfter, "1024", "ok"}; !slices.Equal(got, want) {
		t.Errorf("a new process: %q, want %q", got, want)
	}
	if got, want := s["old"], []string{sum, "4096"}; !slices.Equal(got, want) {
		t.Errorf("version=%s: %q, want %q", before, got, want)
	}
}

// TestShell_RestorePageSize: the shell's .restore of a plain file of
// 2 KiB pages into a volume of 4 KiB pages that has pages gives the volume
// the file's page size and rows, as it would a plain file.
func TestShell_RestorePageSize(t *testing.T) {
	so := libPath(t)
	dir := t.TempDir()
	plain := filepath.Join(t.TempDir(), "plain.db")
	uri := volumeURI("restore.db", dir)
	r := runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+plain+`
PRAGMA page_size=2048;
CREATE TABLE r(a INTEGER, b BLOB);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 3000)
INSERT INTO r SELECT i, randomblob(300) FROM c;
.open `+uri+`
CREATE TABLE x(a);
INSERT INTO x VALUES (1);
.print @before
PRAGMA page_size;
.restore `+plain+`
.print @restored
SELECT count(*), sum(a), sum(length(b)) FROM r;
PRAGMA page_size;
PRAGMA integrity_check;
`)
	if r.err != nil {
		t.Fatalf("sqlite3: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	s := sections(r.stdout)
	rows := "3000|4501500|900000"
	if got := one(t, s, "before"); got != "4096" {
		t.Fatalf("the volume's page size before: %s, want 4096", got)
	}
	if got, want := s["restored"], []string{rows, "2048", "ok"}; !slices.Equal(got, want) {
		t.Errorf("after .restore: %q, want %q\nstderr:\n%s", got, want, r.stderr)
	}
	r = runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+uri+`
.print @reopen
SELECT count(*), sum(a), sum(length(b)) FROM r;
PRAGMA page_size;
`)
	if r.err != nil {
		t.Fatalf("sqlite3 (reopen): %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	if got, want := sections(r.stdout)["reopen"], []string{rows, "2048"}; !slices.Equal(got, want) {
		t.Errorf("a new process: %q, want %q", got, want)
	}
}

// TestShell_MakeDefault: with CAMBIUM_MAKE_DEFAULT=1 the extension is the
// default VFS (and other extensions still load through it); without, it is
// not.
func TestShell_MakeDefault(t *testing.T) {
	so := libPath(t)
	dir := t.TempDir()
	cwd := t.TempDir()
	r := runShell(t, cwd, hostEnv("CAMBIUM_MAKE_DEFAULT=1", "CAMBIUM_DIR="+dir), `.bail on
.load `+so+`
.open default.db
CREATE TABLE d(a);
INSERT INTO d VALUES (42);
.load `+so+`
.print @vfsname
.vfsname
.print @status
PRAGMA cambium_status;
`)
	if r.err != nil {
		t.Fatalf("sqlite3: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	s := sections(r.stdout)
	if got := one(t, s, "vfsname"); got != "cambium" {
		t.Errorf("with CAMBIUM_MAKE_DEFAULT=1, .vfsname = %q", got)
	}
	if st := parseStatus(t, one(t, s, "status")); st.Volume != "default.db" || st.Dir != dir || st.PageCount != 2 {
		t.Errorf("cambium_status = %+v, want volume default.db in %s with 2 pages", st, dir)
	}
	if _, err := os.Stat(filepath.Join(cwd, "default.db")); err == nil {
		t.Errorf("default.db is a plain file; it should be a volume")
	}

	r = runShell(t, cwd, hostEnv("CAMBIUM_DIR="+dir), `.bail on
.load `+so+`
.open plain.db
CREATE TABLE p(a);
.print @vfsname
.vfsname
`)
	if r.err != nil {
		t.Fatalf("sqlite3: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	if got := one(t, sections(r.stdout), "vfsname"); got == "cambium" {
		t.Errorf("without CAMBIUM_MAKE_DEFAULT, .vfsname = %q", got)
	}
	if _, err := os.Stat(filepath.Join(cwd, "plain.db")); err != nil {
		t.Errorf("without CAMBIUM_MAKE_DEFAULT, plain.db should be a plain file: %v", err)
	}
}

// TestShell_TimeTravel: version=N opens the volume read-only as it was at
// version N; the VFS tells SQLite so, and writes fail as read-only.
func TestShell_TimeTravel(t *testing.T) {
	so := libPath(t)
	dir := t.TempDir()
	r := runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+volumeURI("tt.db", dir)+`
CREATE TABLE t(a);
INSERT INTO t VALUES (1), (2), (3);
.print @v1
PRAGMA cambium_version;
INSERT INTO t VALUES (4);
.print @v2
PRAGMA cambium_version;
`)
	if r.err != nil {
		t.Fatalf("sqlite3: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	s := sections(r.stdout)
	v1, v2 := one(t, s, "v1"), one(t, s, "v2")
	if v1 == v2 {
		t.Fatalf("an INSERT did not make a version: %s, %s", v1, v2)
	}
	r = runShell(t, "", hostEnv(), `.load `+so+`
.open `+volumeURI("tt.db", dir, "version="+v1)+`
.print @past
SELECT count(*), sum(a) FROM t;
.print @version
PRAGMA cambium_version;
INSERT INTO t VALUES (5);
.open `+volumeURI("tt.db", dir)+`
.print @now
SELECT count(*), sum(a) FROM t;
`)
	s = sections(r.stdout)
	if got := one(t, s, "past"); got != "3|6" {
		t.Errorf("at version %s: %q, want 3|6", v1, got)
	}
	if got := one(t, s, "version"); got != v1 {
		t.Errorf("cambium_version at version=%s: %s", v1, got)
	}
	if !strings.Contains(r.stderr, "readonly") {
		t.Errorf("an INSERT at a past version did not fail as read-only; stderr:\n%s", r.stderr)
	}
	if got := one(t, s, "now"); got != "4|10" {
		t.Errorf("after the time travel, the newest version: %q, want 4|10", got)
	}
}
