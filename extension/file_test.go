package extension

import (
	"testing"
)

// WriteAt refuses what SQLite never writes, with an error, not a panic or
// a wrong page.
func TestFile_WriteAtEdges(t *testing.T) {
	f, err := OpenMain("edges", Config{Dir: t.TempDir()}, OpenFlags{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 4096), 0); err == nil {
		t.Fatal("write without a lock accepted")
	}
	if err := f.Lock(LockExclusive); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n   int
		off int64
	}{{0, 0}, {4096, -4096}, {4096, 4096 << 32}, {100, 0}, {4096, 100}} {
		if _, err := f.WriteAt(make([]byte, c.n), c.off); err == nil {
			t.Errorf("%d bytes at %d accepted", c.n, c.off)
		}
	}
	if _, err := f.WriteAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1024), 4096); err == nil {
		t.Error("a second page size accepted")
	}
	// Straight from EXCLUSIVE to NONE (SQLite's error path) drops the
	// transaction.
	if err := f.Unlock(LockNone); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := f.Volume().Head(); v != 0 {
		t.Fatalf("an abandoned transaction made version %d", v)
	}
}
