package govfs_test

import (
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/internal/testremote"
)

// gcVolume is a volume a test collects: its writer, in data directory
// dir, pushes to the file remote at root (URL rem).
type gcVolume struct {
	w              *sql.DB
	dir, root, rem string
	commits        string    // the prefix of its commits' keys
	first          float64   // the version its first push made
	afterFirst     time.Time // between its first push and its second
}

// gcWrite makes volume name and pushes n commits of it to a new file
// remote, one by one, each changing a few rows of a table of a few dozen
// pages; params are the writer's extra URI parameters.
func gcWrite(t *testing.T, name string, n int, params string) gcVolume {
	t.Helper()
	v := gcVolume{dir: t.TempDir(), root: filepath.Join(t.TempDir(), "remote"), commits: "v/" + name + "/c/"}
	v.rem = "file://" + v.root
	v.w = openRemote(t, v.dir, name, v.rem, params)
	v.w.SetMaxOpenConns(1)
	mustExec(t, v.w, `CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)`)
	mustExec(t, v.w, `INSERT INTO items SELECT value, 0, randomblob(500) FROM generate_series(1, 200)`)
	v.first = pragmaJSON(t, v.w, "cambium_push")["to"].(float64)
	v.afterFirst = time.Now()
	for i := 1; i < n; i++ {
		mustExec(t, v.w, fmt.Sprintf(`UPDATE items SET qty = %d, body = randomblob(500) WHERE id %% 50 = %d`, i, i%50))
		pragmaJSON(t, v.w, "cambium_push")
	}
	return v
}

// TestGC_Pragma: PRAGMA cambium_gc collects with the connection's retain=
// and min_age=: it deletes nothing younger than min_age, keeps every
// version with retain=forever, and with retain=0s keeps only the newest,
// which still reads as written, while an older one is a clear error.
func TestGC_Pragma(t *testing.T) {
	v := gcWrite(t, "gc.db", 8, "&retain=0s&min_age=1m")
	w, root, rem, commitKeys := v.w, v.root, v.rem, v.commits
	want := tableDigest(t, w)
	commits := testremote.Keys(t, root, commitKeys)
	if len(commits) != 8 {
		t.Fatalf("%d remote commits after 8 pushes: %v", len(commits), commits)
	}

	// Everything is younger than min_age: nothing is deleted.
	res := pragmaJSON(t, w, "cambium_gc")
	for _, k := range []string{"newest_version", "checkpoint_version", "compacted", "pages_rewritten", "deleted_objects", "deleted_bytes", "kept_young", "remote_objects", "remote_bytes", "oldest_version", "oldest_time", "remote_requests"} {
		if _, ok := res[k]; !ok {
			t.Errorf("cambium_gc lacks %q: %v", k, res)
		}
	}
	if res["deleted_objects"] != 0.0 || res["kept_young"].(float64) < 7 || len(testremote.Keys(t, root, commitKeys)) != 8 {
		t.Fatalf("cambium_gc of young objects: %v", res)
	}
	if res["oldest_version"] != res["newest_version"] {
		t.Fatalf("retain=0s keeps the newest version only: %v", res)
	}
	if _, err := w.Exec(`PRAGMA cambium_gc=dry_run`); err == nil || !strings.Contains(err.Error(), "takes no value") {
		t.Fatalf("PRAGMA cambium_gc=dry_run: %v", err)
	}

	// Once old, what retain=forever keeps is every version.
	testremote.Age(t, root, time.Hour)
	forever := openRemote(t, v.dir, "gc.db", rem, "&retain=forever&min_age=1m")
	res = pragmaJSON(t, forever, "cambium_gc")
	if res["oldest_version"] != v.first || len(testremote.Keys(t, root, commitKeys)) != 8 {
		t.Fatalf("cambium_gc with retain=forever: %v; commits %v", res, testremote.Keys(t, root, commitKeys))
	}
	forever.Close()

	// retain=0s deletes every older commit, and the remote holds what the
	// result says.
	res = pragmaJSON(t, w, "cambium_gc")
	if res["deleted_objects"].(float64) < 7 || res["deleted_bytes"].(float64) <= 0 {
		t.Fatalf("cambium_gc of old objects: %v", res)
	}
	if left := testremote.Keys(t, root, commitKeys); len(left) != 1 || left[0] != commits[7] {
		t.Fatalf("commits left: %v, want only the newest, %s", left, commits[7])
	}
	if n := len(testremote.Keys(t, root, "")); res["remote_objects"] != float64(n) {
		t.Fatalf("cambium_gc says the remote keeps %v objects; it has %d", res["remote_objects"], n)
	}

	// A cold replica reads the newest version as written; a time before
	// it is a clear error naming the oldest restorable version.
	if got := tableDigest(t, openRemote(t, t.TempDir(), "gc.db", rem, "")); got != want {
		t.Fatalf("a cold replica after gc reads %s, want %s", got, want)
	}
	old := openRemote(t, t.TempDir(), "gc.db", rem, "&at="+url.QueryEscape(v.afterFirst.UTC().Format(time.RFC3339Nano)))
	_, err := old.Exec(`SELECT 1`)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the oldest restorable version, %v,", res["oldest_version"])) {
		t.Fatalf("open at a collected time: %v", err)
	}
}

// TestGC_Sync: a writer with sync= collects its remote in the background,
// with its retain= and min_age=, after it pushes; a reader with sync=
// never collects.
func TestGC_Sync(t *testing.T) {
	v := gcWrite(t, "bg.db", 6, "")
	root, rem, commitKeys := v.root, v.rem, v.commits
	want := tableDigest(t, v.w)
	testremote.Age(t, root, time.Hour)

	// A reader that syncs pulls, and leaves the remote alone.
	r := openRemote(t, t.TempDir(), "bg.db", rem, "&sync=100ms&retain=0s&min_age=1m")
	if got := tableDigest(t, r); got != want {
		t.Fatalf("reader: %s, want %s", got, want)
	}
	time.Sleep(time.Second) // ten intervals in which a wrong reader would collect
	if n := len(testremote.Keys(t, root, commitKeys)); n != 6 {
		t.Fatalf("a reader with sync= changed the remote's commits: %d, want 6", n)
	}

	// A writer that syncs collects after its next push.
	s := openRemote(t, v.dir, "bg.db", rem, "&sync=100ms&retain=0s&min_age=1m")
	s.SetMaxOpenConns(1)
	mustExec(t, s, `UPDATE items SET qty = -1 WHERE id = 1`)
	want = tableDigest(t, s)
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := testremote.Keys(t, root, commitKeys)
		if len(left) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer with sync= did not collect the old commits: %d left", len(left))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := tableDigest(t, openRemote(t, t.TempDir(), "bg.db", rem, "")); got != want {
		t.Fatalf("a cold replica after background gc reads %s, want %s", got, want)
	}
}
