package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReplication covers push, pull, fetch, hydrate, reset, ls, info and
// log between two data directories and a file:// remote.
func TestReplication(t *testing.T) {
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	rem := fileURL(filepath.Join(tmp, "remote"))
	const name = "tenant 7/orders.db" // escaped in object keys
	files := make([][]byte, 4)
	srcs := make([]string, 4)
	for i := range files {
		srcs[i] = filepath.Join(tmp, fmt.Sprintf("v%d.db", i+1))
		files[i] = makeDB(t, srcs[i], 4096, 400+200*i, fmt.Sprint("gen", i))
	}
	exportEquals := func(dir string, want []byte, extra ...string) {
		t.Helper()
		out := filepath.Join(tmp, "check.db")
		os.Remove(out)
		ok(t, append([]string{"--dir", dir, "export", name, out}, extra...)...)
		sameBytes(t, "export from "+filepath.Base(dir), readFile(t, out), want)
	}

	ok(t, "--dir", a, "import", srcs[0], name)
	fails(t, 2, "has no remote", "--dir", a, "push", name)
	var push pushResult
	okJSON(t, &push, "--dir", a, "--remote", rem, "push", name)
	if push.From != 0 || push.To != 1 || push.Pages != len(files[0])/4096 || push.BytesWritten <= 0 || push.Remote != rem {
		t.Fatalf("push: %+v", push)
	}
	// The volume remembers its remote.
	okJSON(t, &push, "--dir", a, "push", name)
	if push.From != 1 || push.To != 1 || push.Pages != 0 {
		t.Fatalf("push with nothing new: %+v", push)
	}
	fails(t, 1, "replicates with another remote", "--dir", a, "--remote", fileURL(filepath.Join(tmp, "other")), "push", name)

	// A replica pulls (metadata only), then hydrates everything.
	var pull pullResult
	okJSON(t, &pull, "--dir", b, "--remote", rem, "pull", name)
	if pull.From != 0 || pull.To != 1 || pull.PagesChanged != len(files[0])/4096 || pull.BytesRead <= 0 || pull.BytesRead > int64(len(files[0]))/4 {
		t.Fatalf("pull: %+v (a pull reads metadata, not pages)", pull)
	}
	var hyd hydrateResult
	okJSON(t, &hyd, "--dir", b, "hydrate", name)
	if hyd.Pages != len(files[0])/4096 || hyd.Frames == 0 || hyd.BytesRead <= 0 {
		t.Fatalf("hydrate: %+v", hyd)
	}
	okJSON(t, &hyd, "--dir", b, "hydrate", name)
	if hyd.Pages != 0 {
		t.Fatalf("second hydrate: %+v", hyd)
	}
	exportEquals(b, files[0])

	afterV1 := time.Now().UTC().Format(time.RFC3339Nano)

	// The writer moves on; the replica fetches, sees it is behind, pulls
	// and reads the new version lazily.
	ok(t, "--dir", a, "import", "--force", srcs[1], name)
	var info infoResult
	okJSON(t, &info, "--dir", a, "info", name)
	if info.State != "ahead" || info.Version != 2 || info.PushedVersion != 1 {
		t.Fatalf("info after a local commit: %+v", info)
	}
	ok(t, "--dir", a, "push", name)
	var fetch fetchResult
	okJSON(t, &fetch, "--dir", b, "fetch", name)
	if fetch.Version != 1 || fetch.RemoteVersion != 2 || fetch.Commits != 1 {
		t.Fatalf("fetch: %+v", fetch)
	}
	okJSON(t, &info, "--dir", b, "info", name)
	if info.State != "behind" || info.RemoteVersion != 2 || info.Remote != rem || info.PageSize != 4096 {
		t.Fatalf("info on a replica that fetched: %+v", info)
	}
	var ls []lsEntry
	okJSON(t, &ls, "--dir", b, "ls")
	if len(ls) != 1 || ls[0].Volume != name || ls[0].State != "behind" || ls[0].Version != 1 {
		t.Fatalf("ls: %+v", ls)
	}
	if out := ok(t, "--dir", b, "ls"); !strings.Contains(out, name) || !strings.Contains(out, "behind") {
		t.Fatalf("ls:\n%s", out)
	}
	okJSON(t, &pull, "--dir", b, "pull", name)
	if pull.From != 1 || pull.To != 2 {
		t.Fatalf("pull: %+v", pull)
	}
	exportEquals(b, files[1])
	exportEquals(b, files[0], "--version", "1")

	// A remote-only volume: ls --remote lists it, info and export read it
	// without a data directory.
	other := filepath.Join(tmp, "c")
	okJSON(t, &ls, "--dir", other, "--remote", rem, "ls")
	if len(ls) != 1 || ls[0].Volume != name || ls[0].State != "remote-only" || ls[0].Version != 2 || ls[0].RemoteObjects == 0 {
		t.Fatalf("ls --remote with no data directory: %+v", ls)
	}
	okJSON(t, &info, "--dir", other, "--remote", rem, "info", name)
	if info.State != "remote-only" || info.Version != 2 || info.Commits != 2 {
		t.Fatalf("info of a remote-only volume: %+v", info)
	}
	exportEquals(other, files[0], "--remote", rem, "--version", "1")
	exportEquals(other, files[0], "--remote", rem, "--at", afterV1)
	exportEquals(b, files[0], "--at", afterV1)
	fails(t, 1, "no such version committed at or before", "--dir", other, "--remote", rem, "export", name, filepath.Join(tmp, "old.db"), "--at", "2001-01-01T00:00:00Z")
	exportEquals(other, files[1], "--remote", rem)
	if _, err := os.Stat(other); err == nil {
		t.Errorf("reading from the remote alone created a data directory")
	}

	// Divergence: the replica commits while the writer pushes; the
	// replica's push loses, and reset makes it follow the remote again.
	ok(t, "--dir", a, "import", "--force", srcs[2], name)
	ok(t, "--dir", a, "push", name)
	ok(t, "--dir", b, "import", "--force", srcs[3], name)
	fails(t, 1, "push them first", "--dir", b, "pull", name) // unpushed commits
	fails(t, 1, "diverged", "--dir", b, "push", name)
	okJSON(t, &info, "--dir", b, "info", name)
	if info.State != "diverged" {
		t.Fatalf("info after losing a push: %+v", info)
	}
	var reset resetResult
	okJSON(t, &reset, "--dir", b, "reset", name)
	if reset.Discarded != 1 || reset.From != 2 || reset.To != 3 {
		t.Fatalf("reset: %+v", reset)
	}
	exportEquals(b, files[2])

	var log []logEntry
	okJSON(t, &log, "--dir", a, "log", name)
	if len(log) != 3 || log[0].Version != 3 || log[2].Version != 1 || !log[0].Pushed || log[2].Parent != 0 || log[0].PagesChanged == 0 {
		t.Fatalf("log: %+v", log)
	}
	okJSON(t, &log, "--dir", a, "log", "--limit", "1", name)
	if len(log) != 1 || log[0].Version != 3 {
		t.Fatalf("log --limit 1: %+v", log)
	}
	if out := ok(t, "--dir", a, "log", name); !regexp.MustCompile(`(?m)^3\s+2\s`).MatchString(out) {
		t.Fatalf("log:\n%s", out)
	}
	// The text forms of the replication commands.
	if out := ok(t, "--dir", a, "push", name); !strings.Contains(out, "nothing to push") {
		t.Errorf("push:\n%s", out)
	}
	if out := ok(t, "--dir", b, "pull", name); !strings.Contains(out, "up to date at version 3") {
		t.Errorf("pull:\n%s", out)
	}
	if out := ok(t, "--dir", b, "fetch", name); !strings.Contains(out, "nothing newer") {
		t.Errorf("fetch:\n%s", out)
	}
	if out := ok(t, "--dir", b, "info", name); !strings.Contains(out, "synced") {
		t.Errorf("info:\n%s", out)
	}
}
