package govfs_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMptest runs SQLite's multi-process scripts on a volume: the supervisor
// and the clients it starts are separate SQLite instances, as processes
// would be, each with its own connection, locks and busy handler, sharing
// the volume through the cambium VFS; the crash scripts end clients in the
// middle of transactions, which must roll back.
//
// config01 runs nothing here: its first line, --if vfsname() GLOB 'os', has
// no --endif, so on any VFS but SQLite's own the rest of it is skipped.
func TestMptest(t *testing.T) {
	scripts := filepath.Join(moduleDir(t), "vfs", "tests", "mptest", "testdata")
	for _, script := range []string{"multiwrite01", "crash01", "config01", "config02"} {
		t.Run(script, func(t *testing.T) {
			dir := t.TempDir()
			db := fmt.Sprintf("file:mptest.db?dir=%s", url.QueryEscape(dir))
			code, out := runProgram(t, scripts, 32<<20, "mptest", db, script+".test", "--vfs", "cambium", "--quiet")
			summary := mptestSummary.FindStringSubmatch(strings.Join(out, "\n"))
			if summary == nil {
				t.Fatalf("%s: exit %d without a summary", script, code)
			}
			errs, tests := summary[1], summary[2]
			t.Logf("%s: %s errors out of %s tests", script, errs, tests)
			if code != 0 || errs != "0" {
				if changes := ignoredPageSizes(out); changes != "" {
					t.Fatalf("%s: %s errors out of %s tests, each a page size change by VACUUM that the volume ignored (%s)",
						script, errs, tests, changes)
				}
				t.Fatalf("%s: exit %d, %s errors out of %s tests (the log above has them)", script, code, errs, tests)
			}
			if tests == "0" && script != "config01" {
				t.Fatalf("%s ran no tests", script)
			}
			// It ran on the volume, which holds mptest's own tables.
			ro := openDB(t, dir, "mptest.db", "&mode=ro")
			if n := queryInt(t, ro, "SELECT count(*) FROM sqlite_schema WHERE name IN ('task', 'counters', 'client')"); n != 3 {
				t.Fatalf("the volume has %d of mptest's 3 tables", n)
			}
			integrityOK(t, ro)
		})
	}
}

var (
	mptestSummary = regexp.MustCompile(`Summary: (\d+) errors out of (\d+) tests`)
	// mptestSizes is one side of a failed --match of the page sizes that
	// the five clients saw: Expected [1024 1024 1024 1024 1024].
	mptestSizes = regexp.MustCompile(`^(Expected|Got) +\[(\d+)(?: \d+){4}\]$`)
)

// ignoredPageSizes returns "want N, got M" for each error of a run, if every
// error is a failed --match of the clients' page sizes (after PRAGMA
// page_size=N; VACUUM), and "" otherwise.
func ignoredPageSizes(out []string) string {
	var msgs []string
	for _, line := range out {
		if _, msg, ok := strings.Cut(line, ":ERROR: "); ok {
			msgs = append(msgs, strings.TrimSpace(msg))
		}
	}
	if len(msgs) == 0 || len(msgs)%3 != 0 {
		return ""
	}
	var changes []string
	for i := 0; i < len(msgs); i += 3 {
		want, got := mptestSizes.FindStringSubmatch(msgs[i+1]), mptestSizes.FindStringSubmatch(msgs[i+2])
		if !strings.HasPrefix(msgs[i], "line ") || want == nil || got == nil || want[1] != "Expected" || got[1] != "Got" {
			return ""
		}
		changes = append(changes, fmt.Sprintf("want %s, got %s", want[2], got[2]))
	}
	return strings.Join(changes, "; ")
}
