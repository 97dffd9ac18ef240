package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cambiumdb/cambium/engine"
)

// corrupt flips bytes in the middle of the file at path.
func corrupt(t testing.TB, path string) {
	t.Helper()
	b := readFile(t, path)
	for i := len(b) / 2; i < len(b)/2+16; i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src.db")
	want := makeDB(t, src, 4096, 1200, "v")
	pages := len(want) / 4096
	rem := filepath.Join(tmp, "remote")

	t.Run("OK", func(t *testing.T) {
		dir := filepath.Join(tmp, "ok")
		ok(t, "--dir", dir, "import", src, "v.db")
		out := ok(t, "--dir", dir, "verify", "v.db")
		if !strings.HasPrefix(out, fmt.Sprintf("ok: %s pages, 0 frames verified", count(pages))) {
			t.Fatalf("verify:\n%s", out)
		}
		ok(t, "--dir", dir, "--remote", fileURL(rem), "push", "v.db")
		var res verifyResult
		okJSON(t, &res, "--dir", dir, "--remote", fileURL(rem), "verify", "v.db")
		if !res.OK || res.LocalPages != pages || res.Frames != pages || res.RemoteVersion != 1 || res.FrameBytes == 0 || len(res.Problems) != 0 {
			t.Fatalf("verify --remote: %+v", res)
		}
		// A replica that has fetched nothing verifies the remote's frames.
		replica := filepath.Join(tmp, "replica")
		ok(t, "--dir", replica, "--remote", fileURL(rem), "pull", "v.db")
		okJSON(t, &res, "--dir", replica, "verify", "v.db")
		if !res.OK || res.RemotePages != pages || res.LocalPages != 0 {
			t.Fatalf("verify of a replica without --remote: %+v", res)
		}
	})

	t.Run("CorruptLocalPage", func(t *testing.T) {
		dir := filepath.Join(tmp, "local")
		ok(t, "--dir", dir, "import", src, "v.db")
		// Move every page from the write-ahead log into table files,
		// whose blocks carry checksums, then damage one.
		e, err := engine.Open(engine.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Flush(); err != nil {
			t.Fatal(err)
		}
		e.Close()
		var tables []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".sst") {
				tables = append(tables, p)
			}
			return nil
		})
		if len(tables) == 0 {
			t.Fatal("no table file after a flush")
		}
		for _, p := range tables {
			corrupt(t, p)
		}
		r := fails(t, 1, "1 problem (listed above)", "--dir", dir, "verify", "v.db")
		if !strings.Contains(r.stdout, "FAILED") || !regexp.MustCompile(`page \d+: .*checksum mismatch`).MatchString(r.stdout) {
			t.Fatalf("verify of a damaged table file:\n%s", r)
		}
		if strings.Contains(r.stderr, "on-disk corruption") {
			t.Errorf("verify repeats the store's own corruption report on standard error:\n%s", r.stderr)
		}
		var res verifyResult
		r = cli(t, nil, "--json", "--dir", dir, "verify", "v.db")
		if r.code != 1 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.OK || res.ProblemCount != 1 || res.LocalPages != pages-1 {
			t.Fatalf("verify --json of a damaged table file: %+v\n%s", res, r)
		}
		// Reading the damaged page is an error, not a crash or zeros.
		fails(t, 1, "checksum mismatch", "--dir", dir, "export", "v.db", filepath.Join(tmp, "bad.db"))
	})

	t.Run("CorruptRemoteSegment", func(t *testing.T) {
		dir := filepath.Join(tmp, "writer")
		rem := filepath.Join(tmp, "remote2")
		ok(t, "--dir", dir, "import", src, "v.db")
		ok(t, "--dir", dir, "--remote", fileURL(rem), "push", "v.db")
		segs, _ := filepath.Glob(filepath.Join(rem, "v", "v.db", "s", "*"))
		if len(segs) != 1 {
			t.Fatalf("segments: %v", segs)
		}
		corrupt(t, segs[0])
		// The local copy is sound; the remote's is not.
		ok(t, "--dir", dir, "verify", "v.db")
		r := fails(t, 1, "problem", "--dir", dir, "--remote", fileURL(rem), "verify", "v.db")
		if !regexp.MustCompile(`segment v/v\.db/s/[0-9a-f]{32}: frame of pages \d+\.\.\d+ at offset \d+: .*checksum`).MatchString(r.stdout) {
			t.Fatalf("verify --remote of a damaged segment:\n%s", r)
		}
		// A replica reading the damaged frame gets an error naming it.
		replica := filepath.Join(tmp, "replica2")
		ok(t, "--dir", replica, "--remote", fileURL(rem), "pull", "v.db")
		fails(t, 1, "corrupt remote data", "--dir", replica, "hydrate", "v.db")
	})
}
