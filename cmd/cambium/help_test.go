package main

import (
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	out := ok(t, "help")
	for _, c := range []string{"import", "export", "ls", "info", "log", "push", "pull", "fetch", "hydrate", "reset", "verify", "gc", "demo", "bench"} {
		if !strings.Contains(out, c) {
			t.Errorf("help lacks %q:\n%s", c, out)
		}
	}
	for _, c := range []string{"import", "export", "ls", "info", "log", "push", "pull", "fetch", "hydrate", "reset", "verify", "gc", "demo", "bench"} {
		help := ok(t, "help", c)
		if !strings.HasPrefix(help, "usage: cambium "+c) || !strings.Contains(help, "--dir") {
			t.Errorf("help %s:\n%s", c, help)
		}
		if got := ok(t, c, "-h"); got != help {
			t.Errorf("cambium %s -h differs from cambium help %s:\n%s", c, c, got)
		}
		if got := ok(t, c, "--help"); got != help {
			t.Errorf("cambium %s --help differs from cambium help %s", c, c)
		}
	}
	if strings.Contains(out, "bench-worker") {
		t.Errorf("help lists the internal bench-worker:\n%s", out)
	}
	if out := ok(t, "help", "bench"); !strings.Contains(out, "processes") || !strings.Contains(out, "--processes-profile") {
		t.Errorf("help bench lacks the processes workload:\n%s", out)
	}
	if out := ok(t, "--help"); !strings.Contains(out, "commands:") {
		t.Errorf("cambium --help:\n%s", out)
	}
	if out := ok(t, "help", "gc"); !strings.Contains(out, "--retain DUR") || !strings.Contains(out, "--min-age DUR") || !strings.Contains(out, "--dry-run") || !strings.Contains(out, "CAMBIUM_RETAIN") {
		t.Errorf("help gc lacks its flags:\n%s", out)
	}
	if out := ok(t, "help", "log"); !strings.Contains(out, "--remote-versions") {
		t.Errorf("help log lacks --remote-versions:\n%s", out)
	}
	if out := ok(t, "help"); strings.Contains(out, "not available") {
		t.Errorf("help still says something is not available:\n%s", out)
	}
	if out := ok(t, "help", "export"); !strings.Contains(out, "--version N") || !strings.Contains(out, "--check") {
		t.Errorf("help export lacks its flags:\n%s", out)
	}
}
