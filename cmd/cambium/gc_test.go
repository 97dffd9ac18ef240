package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/internal/testremote"
)

// TestGC covers gc and log --remote-versions against a file:// remote:
// young objects are never deleted, a dry run changes nothing, the
// environment stands in for the flags, and a collection of old objects
// keeps exactly the window, which still exports as written while a time
// before it is a clear error.
func TestGC(t *testing.T) {
	tmp := t.TempDir()
	dir, root := filepath.Join(tmp, "a"), filepath.Join(tmp, "remote")
	rem := fileURL(root)
	const name = "gc.db"
	const commitKeys = "v/" + name + "/c/"
	var last []byte
	var afterFirst string
	for i := range 5 {
		src := filepath.Join(tmp, fmt.Sprintf("v%d.db", i))
		last = makeDB(t, src, 4096, 300+50*i, fmt.Sprint("gen", i))
		ok(t, "--dir", dir, "import", "--force", src, name)
		ok(t, "--dir", dir, "--remote", rem, "push", name)
		if i == 0 {
			afterFirst = time.Now().UTC().Format(time.RFC3339Nano)
		}
	}
	ok(t, "--dir", dir, "import", filepath.Join(tmp, "v0.db"), "local.db")
	fails(t, 2, `"local.db" has no remote`, "--dir", dir, "gc", "local.db")
	commits := testremote.Keys(t, root, commitKeys)
	if len(commits) != 5 {
		t.Fatalf("%d remote commits after 5 pushes: %v", len(commits), commits)
	}

	// The remote's versions, before any collection.
	var versions []logEntry
	okJSON(t, &versions, "--dir", dir, "log", "--remote-versions", name)
	if len(versions) != 5 || versions[0].Version != 5 || versions[4].Version != 1 || versions[4].Parent != 0 || !versions[0].Pushed || versions[0].Time == "" {
		t.Fatalf("log --remote-versions: %+v", versions)
	}
	if out := ok(t, "--dir", dir, "log", "--remote-versions", "--limit", "2", name); strings.Contains(out, "PUSHED") || strings.Count(out, "\n") != 3 {
		t.Fatalf("log --remote-versions --limit 2:\n%s", out)
	}

	// Everything is younger than the minimum age: nothing is deleted.
	var res gcResult
	okJSON(t, &res, "--dir", dir, "gc", name, "--retain", "0s", "--min-age", "1m")
	if res.DeletedObjects != 0 || res.KeptYoung == 0 || res.NewestVersion != 5 || res.OldestVersion != 5 || res.Retain != "0s" || res.MinAge != "1m" || res.Remote != rem {
		t.Fatalf("gc of young objects: %+v", res)
	}
	if left := testremote.Keys(t, root, commitKeys); !slices.Equal(left, commits) {
		t.Fatalf("gc deleted young commits: %v", left)
	}

	// Once they are old, a dry run says what it would delete and deletes
	// nothing.
	testremote.Age(t, root, time.Hour)
	before := testremote.Keys(t, root, "")
	okJSON(t, &res, "--dir", dir, "gc", name, "--retain", "0s", "--min-age", "1m", "--dry-run")
	if !res.DryRun || res.DeletedObjects < 4 || res.DeletedBytes <= 0 {
		t.Fatalf("gc --dry-run: %+v", res)
	}
	if after := testremote.Keys(t, root, ""); !slices.Equal(after, before) {
		t.Fatalf("gc --dry-run changed the remote: %d objects, then %d", len(before), len(after))
	}
	if out := ok(t, "--dir", dir, "gc", name, "--retain", "0s", "--min-age", "1m", "--dry-run"); !strings.Contains(out, "dry run") || !strings.Contains(out, "would have deleted") {
		t.Fatalf("gc --dry-run:\n%s", out)
	}

	// CAMBIUM_RETAIN and CAMBIUM_MIN_AGE stand in for the flags: forever
	// keeps every version.
	env := []string{"CAMBIUM_RETAIN=forever", "CAMBIUM_MIN_AGE=2m"}
	r := cli(t, env, "--json", "--dir", dir, "gc", name)
	if r.code != 0 || !strings.Contains(r.stdout, `"retain":"forever"`) || !strings.Contains(r.stdout, `"min_age":"2m"`) || !strings.Contains(r.stdout, `"oldest_version":1,`) {
		t.Fatalf("gc with CAMBIUM_RETAIN=forever: %s", r)
	}
	if left := testremote.Keys(t, root, commitKeys); !slices.Equal(left, commits) {
		t.Fatalf("gc with retain forever deleted commits: %v", left)
	}
	if r := cli(t, []string{"CAMBIUM_RETAIN=always"}, "--dir", dir, "gc", name); r.code != 2 || !strings.Contains(r.stderr, `CAMBIUM_RETAIN="always": want a duration`) {
		t.Fatalf("gc with a bad CAMBIUM_RETAIN: %s", r)
	}
	if r := cli(t, []string{"CAMBIUM_MIN_AGE=1s"}, "--dir", dir, "gc", name); r.code != 2 || !strings.Contains(r.stderr, `CAMBIUM_MIN_AGE="1s": want a duration of at least 1m`) {
		t.Fatalf("gc with a bad CAMBIUM_MIN_AGE: %s", r)
	}

	// The collection: only the newest version is kept.
	out := ok(t, "--dir", dir, "gc", name, "--retain", "0s", "--min-age", "1m")
	for _, want := range []string{"collected " + name + " in " + rem, "deleted ", "restorable: from version 5", "retain 0s"} {
		if !strings.Contains(out, want) {
			t.Errorf("gc output lacks %q:\n%s", want, out)
		}
	}
	if left := testremote.Keys(t, root, commitKeys); len(left) != 1 || left[0] != commits[4] {
		t.Fatalf("commits left after gc: %v, want %s", left, commits[4])
	}
	okJSON(t, &versions, "--dir", filepath.Join(tmp, "none"), "--remote", rem, "log", "--remote-versions", name)
	if len(versions) != 1 || versions[0].Version != 5 {
		t.Fatalf("log --remote-versions after gc, from the remote alone: %+v", versions)
	}
	// A new replica pulls through the checkpoint; the kept version exports
	// from the remote alone.
	exported := filepath.Join(tmp, "out.db")
	ok(t, "--dir", filepath.Join(tmp, "b"), "--remote", rem, "pull", name)
	ok(t, "--dir", filepath.Join(tmp, "b"), "export", name, exported)
	sameBytes(t, "export from a replica pulled after gc", readFile(t, exported), last)
	os.Remove(exported)
	ok(t, "--dir", filepath.Join(tmp, "c"), "--remote", rem, "export", "--version", "5", name, exported)
	sameBytes(t, "export --version 5 from the remote after gc", readFile(t, exported), last)
	fails(t, 1, "the oldest restorable version, 5,", "--dir", filepath.Join(tmp, "c"), "--remote", rem, "export", name, filepath.Join(tmp, "old.db"), "--at", afterFirst)
	if _, err := os.Stat(filepath.Join(tmp, "none")); err == nil {
		t.Errorf("log --remote-versions with no data directory created one")
	}
}
