package govfs_test

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestReplication_Warm: after a pull, a replica with the default warm=on
// fetches again, in the background, the changed pages it had read, so
// that reading them afterwards makes no request; one with warm=off
// fetches nothing until it reads, and then pays requests for the changed
// pages. Both read the writer's rows.
func TestReplication_Warm(t *testing.T) {
	rem := "file://" + filepath.Join(t.TempDir(), "remote")
	w := openRemote(t, t.TempDir(), "warm.db", rem, "")
	w.SetMaxOpenConns(1)
	mustExec(t, w, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
	mustExec(t, w, `INSERT INTO items SELECT value, 7, randomblob(500) FROM generate_series(1, 2000)`)
	pragmaJSON(t, w, "cambium_push")

	replicas := map[string]struct {
		params string
		warm   bool
	}{
		"Default": {"", true},
		"Off":     {"&warm=off", false},
	}
	dbs := map[string]*sql.DB{}
	for name, r := range replicas {
		db := openRemote(t, t.TempDir(), "warm.db", rem, r.params)
		tableDigest(t, db) // every page read, and stored
		dbs[name] = db
	}
	// Rows of the same size, rewritten in place: every changed page is
	// one the replicas read.
	mustExec(t, w, `UPDATE items SET body = randomblob(500) WHERE id % 10 = 0`)
	pragmaJSON(t, w, "cambium_push")
	want := tableDigest(t, w)

	for name, r := range replicas {
		t.Run(name, func(t *testing.T) {
			db := dbs[name]
			fetched := pragmaJSON(t, db, "cambium_stats")["pages_fetched"].(float64)
			pull := pragmaJSON(t, db, "cambium_pull")
			if pull["pages_changed"].(float64) < 10 {
				t.Fatalf("pull: %v", pull)
			}
			if r.warm {
				waitRewarm(t, db, fetched)
			} else {
				// Time in which a rewarm would have fetched them.
				time.Sleep(500 * time.Millisecond)
				if n := pragmaJSON(t, db, "cambium_stats")["pages_fetched"].(float64); n != fetched {
					t.Fatalf("warm=off fetched %v pages after the pull, before any read", n-fetched)
				}
			}
			before := pragmaJSON(t, db, "cambium_stats")
			if got := tableDigest(t, db); got != want {
				t.Fatalf("after the pull the replica reads %s, want %s", got, want)
			}
			after := pragmaJSON(t, db, "cambium_stats")
			reqs := after["remote_requests"].(float64) - before["remote_requests"].(float64)
			if r.warm && reqs != 0 {
				t.Fatalf("reading the changed rows made %v requests after the rewarm, want 0", reqs)
			}
			if !r.warm && reqs == 0 {
				t.Fatalf("reading the changed rows with warm=off made no request; were they rewarmed? stats %v", after)
			}
		})
	}
}

// waitRewarm waits until the rewarm that follows a pull is done: SQL has
// no way to wait for it, so until the pages fetched, fetched before the
// pull, have grown (the rewarm claims every page it fetches before it
// fetches any, so that readers wait for it rather than fetch themselves)
// and then stopped growing.
func waitRewarm(t *testing.T, db *sql.DB, fetched float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for start, stable := fetched, 0; stable < 5; {
		if time.Now().After(deadline) {
			t.Fatalf("no rewarm done after a minute: %v pages fetched, %v before the pull", fetched, start)
		}
		time.Sleep(20 * time.Millisecond)
		switch n := pragmaJSON(t, db, "cambium_stats")["pages_fetched"].(float64); {
		case n > fetched:
			fetched, stable = n, 0
		case n > start:
			stable++
		}
	}
}
