package govfs_test

import (
	"strings"
	"testing"
	"time"
)

// TestReplication_CacheBudget: a replica with cache_budget= smaller than
// the volume reads every row (a scan: once the budget is full, what it
// fetches stays in memory, not on disk), stays within its budget, reads
// every row again right, and reports it; a writer whose unpushed pages
// pass its budget says by how much until it pushes, then evicts back to
// its budget in the background.
func TestReplication_CacheBudget(t *testing.T) {
	const budget = 256 << 10
	rem := remotes(t)["file"](t)
	w := openRemote(t, t.TempDir(), "b.db", rem, "&cache_budget=256KiB")
	w.SetMaxOpenConns(1)
	mustExec(t, w, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
	mustExec(t, w, `INSERT INTO items SELECT value, value, randomblob(1000) FROM generate_series(1, 2000)`)
	want := tableDigest(t, w)

	// Unpushed: over the budget, and said so.
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
		}
	}
	var st map[string]any
	until("writer over budget", func() bool {
		st = pragmaJSON(t, w, "cambium_status")
		over, _ := st["over_budget_bytes"].(float64)
		return over > 0
	})
	if note, _ := st["note"].(string); st["state"] != "ahead" || st["cache_budget"].(float64) != budget ||
		!strings.Contains(note, "not pushed") || !strings.Contains(note, "cambium_push") {
		t.Fatalf("status of a writer over its budget: %v", st)
	}
	pragmaJSON(t, w, "cambium_push")
	until("writer back within budget", func() bool {
		st = pragmaJSON(t, w, "cambium_stats")
		return st["cached_bytes"].(float64) <= budget && st["evictions"].(float64) > 0
	})
	if got := tableDigest(t, w); got != want {
		t.Fatalf("writer after eviction: %s, want %s", got, want)
	}

	rdir := t.TempDir()
	r := openRemote(t, rdir, "b.db", rem, "&cache_budget=256KiB")
	if got := tableDigest(t, r); got != want {
		t.Fatalf("replica: %s, want %s", got, want)
	}
	until("replica within budget", func() bool {
		st = pragmaJSON(t, r, "cambium_stats")
		cached, meta := st["cached_bytes"].(float64), st["metadata_bytes"].(float64)
		return cached > 0 && meta > 0 && cached+meta <= budget && st["evicted_uncompacted_bytes"].(float64) == 0
	})
	if got := tableDigest(t, r); got != want {
		t.Fatalf("replica after eviction: %s, want %s", got, want)
	}
	st = pragmaJSON(t, r, "cambium_stats")
	if hr := st["hit_rate"].(float64); hr <= 0 || hr >= 1 || st["remote_reads"].(float64) == 0 {
		t.Fatalf("replica stats: %v", st)
	}
	t.Logf("replica: %v", st)

	// Another connection of the process on the same directory cannot ask
	// for another budget.
	other := openRemote(t, rdir, "b.db", rem, "&cache_budget=1MiB")
	if _, err := other.Exec(`SELECT 1`); err == nil || !strings.Contains(err.Error(), "cache_budget") {
		t.Fatalf("a second budget for one directory: %v", err)
	}
	same := openRemote(t, rdir, "b.db", rem, "")
	if got := tableDigest(t, same); got != want {
		t.Fatalf("a connection without a budget on the same directory: %s, want %s", got, want)
	}
}
