package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestPull_Warm: cambium pull with --warm on (the default) fetches again
// the changed pages the data directory had stored, waits for it and says
// how many it fetched; with --warm off or CAMBIUM_WARM=off it fetches
// none, and they are fetched when read. Either way the replica reads the
// writer's bytes.
func TestPull_Warm(t *testing.T) {
	tmp := t.TempDir()
	w, rem := filepath.Join(tmp, "w"), fileURL(filepath.Join(tmp, "remote"))
	const name = "warm.db"
	v1, v2 := filepath.Join(tmp, "v1.db"), filepath.Join(tmp, "v2.db")
	old := makeDB(t, v1, 4096, 400, "one")
	want := makeDB(t, v2, 4096, 400, "two")
	if len(old) != len(want) {
		// Then every page of v2 is one the replicas stored at v1.
		t.Fatalf("the two versions have %d and %d bytes; the test wants them the same size", len(old), len(want))
	}
	ok(t, "--dir", w, "import", v1, name)
	ok(t, "--dir", w, "--remote", rem, "push", name)
	cases := []struct {
		name string
		env  []string
		args []string
		warm bool
	}{
		{"Default", nil, nil, true},
		{"OnUpper", nil, []string{"--warm", "ON"}, true},
		{"Off", nil, []string{"--warm", "off"}, false},
		{"EnvOff", []string{"CAMBIUM_WARM=off"}, nil, false},
		{"FlagBeforeEnv", []string{"CAMBIUM_WARM=off"}, []string{"--warm=true"}, true},
	}
	dirs := map[string]string{"Text": filepath.Join(tmp, "Text")}
	for _, c := range cases {
		dirs[c.name] = filepath.Join(tmp, c.name)
	}
	for _, dir := range dirs {
		ok(t, "--dir", dir, "--remote", rem, "pull", name)
		ok(t, "--dir", dir, "hydrate", name)
	}
	ok(t, "--dir", w, "import", "--force", v2, name)
	ok(t, "--dir", w, "push", name)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := dirs[c.name]
			r := cli(t, c.env, append([]string{"--json", "--dir", dir, "pull", name}, c.args...)...)
			if r.code != 0 {
				t.Fatal(r)
			}
			var pull pullResult
			if err := json.Unmarshal([]byte(r.stdout), &pull); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.stdout, `"rewarmed_pages":`) || !strings.Contains(r.stdout, `"warm":`) {
				t.Fatalf("pull --json lacks warm or rewarmed_pages: %s", r.stdout)
			}
			if pull.To != 2 || pull.PagesChanged == 0 || pull.Warm != c.warm {
				t.Fatalf("pull: %+v, want warm %v", pull, c.warm)
			}
			// What the rewarm fetched, hydrate need not.
			var hyd hydrateResult
			okJSON(t, &hyd, "--dir", dir, "hydrate", name)
			if c.warm && (pull.RewarmedPages != int64(pull.PagesChanged) || hyd.Pages != 0) {
				t.Fatalf("pull rewarmed %d pages, then hydrate fetched %d; want all %d changed pages rewarmed", pull.RewarmedPages, hyd.Pages, pull.PagesChanged)
			}
			if !c.warm && (pull.RewarmedPages != 0 || hyd.Pages != pull.PagesChanged) {
				t.Fatalf("pull --warm off rewarmed %d pages, then hydrate fetched %d; want none, then all %d changed pages", pull.RewarmedPages, hyd.Pages, pull.PagesChanged)
			}
			out := filepath.Join(dir, "check.db")
			ok(t, "--dir", dir, "export", name, out)
			sameBytes(t, "export of "+c.name, readFile(t, out), want)
		})
	}

	// The text form says what the rewarm fetched.
	if out := ok(t, "--dir", dirs["Text"], "pull", name); !strings.Contains(out, "pages changed") || !strings.Contains(out, "rewarmed: fetched") {
		t.Fatalf("pull:\n%s", out)
	}
}
