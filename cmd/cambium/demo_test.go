package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	r := cli(t, nil, "demo")
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{
		"1. The writer creates", "Pushed versions", "2. The replica opens", "It downloaded",
		"4. The replica pulls", "of metadata", "5. Time travel", "-> 40 orders, 4202 items, shipped",
		"-> 40 orders, 202 items, new", "$ cambium --dir $REPLICA --remote $REMOTE verify", "ok: ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// The replica answered the first query with a small fraction of the
	// database.
	m := regexp.MustCompile(`It downloaded .* requests \(\d+ pages\): ([0-9.]+)% of the`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("demo output lacks the first query's download:\n%s", r.stdout)
	}
	var pct float64
	fmt.Sscan(m[1], &pct)
	if pct <= 0 || pct > 2 {
		t.Errorf("the first query downloaded %.1f%% of the database", pct)
	}
	m = regexp.MustCompile(`removed (\S+)\.`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("demo does not say what it removed:\n%s", r.stdout)
	}
	if _, err := os.Stat(m[1]); err == nil {
		t.Errorf("demo left %s behind", m[1])
	}
	if t.Failed() {
		t.Log(r)
	}

	// With a remote of the user's, the demo leaves its volume there.
	rem := fileURL(t.TempDir())
	r = cli(t, []string{"CAMBIUM_REMOTE=" + rem}, "demo", "--rows", "500")
	if r.code != 0 || !strings.Contains(r.stdout, "stays in "+rem) {
		t.Fatal(r)
	}
	var ls []lsEntry
	okJSON(t, &ls, "--dir", t.TempDir(), "--remote", rem, "ls")
	if len(ls) != 1 || !strings.HasPrefix(ls[0].Volume, "demo/orders-") || ls[0].Version == 0 {
		t.Fatalf("ls of the demo's remote: %+v", ls)
	}
}
