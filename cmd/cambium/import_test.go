package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImportExport_RoundTrip(t *testing.T) {
	for _, pageSize := range []int{512, 4096, 65536} {
		t.Run(fmt.Sprintf("page_size=%d", pageSize), func(t *testing.T) {
			tmp := t.TempDir()
			dir := filepath.Join(tmp, "data")
			src := filepath.Join(tmp, "src.db")
			want := makeDB(t, src, pageSize, 1500, "one")
			var imp importResult
			okJSON(t, &imp, "--dir", dir, "import", src, "acme/orders.db")
			if imp.Version != 1 || imp.PageSize != pageSize || imp.Bytes != int64(len(want)) || imp.Pages*int64(pageSize) != int64(len(want)) {
				t.Fatalf("import: %+v for a %d-byte file", imp, len(want))
			}
			out := filepath.Join(tmp, "out.db")
			var exp exportResult
			okJSON(t, &exp, "--dir", dir, "export", "acme/orders.db", out, "--check")
			if exp.Version != 1 || exp.Integrity != "ok" || exp.Bytes != int64(len(want)) {
				t.Fatalf("export: %+v", exp)
			}
			sameBytes(t, "exported file", readFile(t, out), want)

			fails(t, 1, "exists; pass --force", "--dir", dir, "export", "acme/orders.db", out)
			fails(t, 1, "already has", "--dir", dir, "import", src, "acme/orders.db")

			// --force replaces the contents as a new version; the old one
			// stays readable.
			src2 := filepath.Join(tmp, "src2.db")
			want2 := makeDB(t, src2, pageSize, 700, "two")
			if got := ok(t, "--dir", dir, "import", "--force", src2, "acme/orders.db"); !strings.Contains(got, "version 2") {
				t.Fatalf("import --force: %s", got)
			}
			ok(t, "--dir", dir, "export", "--force", "acme/orders.db", out)
			sameBytes(t, "exported version 2", readFile(t, out), want2)
			ok(t, "--dir", dir, "export", "acme/orders.db", out, "--version", "1", "--force", "--check")
			sameBytes(t, "exported version 1", readFile(t, out), want)
			fails(t, 1, "no such version", "--dir", dir, "export", "acme/orders.db", filepath.Join(tmp, "v9.db"), "--version", "9")
			if _, err := os.Stat(filepath.Join(tmp, "v9.db")); err == nil {
				t.Errorf("a failed export left its file behind")
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, ".*cambium-*")); len(left) > 0 {
				t.Errorf("exports left temporary files: %v", left)
			}
		})
	}
}

func TestImport_Refuses(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	src := filepath.Join(tmp, "src.db")
	good := makeDB(t, src, 4096, 300, "x")

	t.Run("Truncated", func(t *testing.T) {
		p := filepath.Join(tmp, "short.db")
		os.WriteFile(p, good[:len(good)-100], 0o644)
		fails(t, 1, "not a whole number", "--dir", dir, "import", p, "short.db")
		p2 := filepath.Join(tmp, "short2.db")
		os.WriteFile(p2, good[:len(good)-4096], 0o644)
		fails(t, 1, "truncated", "--dir", dir, "import", p2, "short2.db")
	})
	t.Run("BadPageSize", func(t *testing.T) {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint16(b[16:], 1000)
		p := filepath.Join(tmp, "ps.db")
		os.WriteFile(p, b, 0o644)
		fails(t, 1, "page size 1000", "--dir", dir, "import", p, "ps.db")
	})
	t.Run("HotJournal", func(t *testing.T) {
		p := filepath.Join(tmp, "hot.db")
		os.WriteFile(p, good, 0o644)
		os.WriteFile(p+"-journal", append(bytes.Clone(journalMagic), make([]byte, 512)...), 0o644)
		fails(t, 1, "hot rollback journal", "--dir", dir, "import", p, "hot.db")
		// A journal that holds nothing (zeroed header) is not hot.
		os.WriteFile(p+"-journal", make([]byte, 512), 0o644)
		ok(t, "--dir", dir, "import", p, "hot.db")
	})
	t.Run("WAL", func(t *testing.T) {
		b := bytes.Clone(good)
		b[18], b[19] = 2, 2
		p := filepath.Join(tmp, "wal.db")
		os.WriteFile(p, b, 0o644)
		os.WriteFile(p+"-wal", []byte("frames not checkpointed yet"), 0o644)
		fails(t, 1, "checkpoint first", "--dir", dir, "import", p, "wal.db")
		// Checkpointed (no -wal): imported in rollback-journal mode.
		os.Remove(p + "-wal")
		if out := ok(t, "--dir", dir, "import", p, "wal.db"); !strings.Contains(out, "WAL mode") {
			t.Errorf("import of a WAL-mode file does not say it converted it: %s", out)
		}
		out := filepath.Join(tmp, "wal-out.db")
		ok(t, "--dir", dir, "export", "--check", "wal.db", out)
		sameBytes(t, "exported WAL-mode import", readFile(t, out), good)
	})
}

// TestImport_PageSizeChange: import --force of a file of another page size
// into a volume that has pages gives the volume the file's page size, larger
// and then smaller (as a VACUUM after PRAGMA page_size would), and export
// gives the file back byte for byte.
func TestImport_PageSizeChange(t *testing.T) {
	dir, tmp := t.TempDir(), t.TempDir()
	for i, size := range []int{4096, 8192, 1024} {
		p := filepath.Join(tmp, fmt.Sprintf("in%d.db", i))
		makeDB(t, p, size, 50, fmt.Sprint(i))
		want := readFile(t, p)
		ok(t, "--dir", dir, "import", "--force", p, "resize.db")
		out := filepath.Join(tmp, fmt.Sprintf("out%d.db", i))
		ok(t, "--dir", dir, "export", "--check", "resize.db", out)
		sameBytes(t, fmt.Sprintf("export after an import of %d-byte pages", size), readFile(t, out), want)
	}
}
