package extension

import (
	"bytes"
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

// The change counter and version-valid-for fields of the header read as
// the version seen, whatever page 1 stores; a commit that changes only
// them stores nothing.
func TestFile_ChangeCounter(t *testing.T) {
	f, err := OpenMain("counter", Config{Dir: t.TempDir()}, OpenFlags{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(counter byte, fill byte) {
		t.Helper()
		if err := f.Lock(LockExclusive); err != nil {
			t.Fatal(err)
		}
		page := bytes.Repeat([]byte{fill}, 4096)
		page[27], page[95], page[99] = counter, counter, counter
		if _, err := f.WriteAt(page, 0); err != nil {
			t.Fatal(err)
		}
		f.CommitPhaseTwo() // SQLite committed
		if err := f.Unlock(LockShared); err != nil {
			t.Fatal(err)
		}
	}
	header := func() []byte {
		t.Helper()
		h := make([]byte, 100)
		if _, err := f.ReadAt(h, 0); err != nil {
			t.Fatal(err)
		}
		part := make([]byte, 6) // a read that covers part of the counter
		if _, err := f.ReadAt(part, 22); err != nil || !bytes.Equal(part, h[22:28]) {
			t.Fatalf("bytes 22-27 read alone: %x, %v; in the header %x", part, err, h[22:28])
		}
		return h
	}
	write(1, 7) // version 1
	write(2, 7) // only the counter fields differ: no version
	write(3, 8) // version 2
	if v, _, _ := f.Volume().Head(); v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
	h := header()
	if !bytes.Equal(h[24:28], []byte{0, 0, 0, 2}) || !bytes.Equal(h[92:96], h[24:28]) {
		t.Fatalf("counter %x, version-valid-for %x; want both 2", h[24:28], h[92:96])
	}
	if h[0] != 8 || h[99] != 1 {
		t.Fatalf("header byte 0 is %d, byte 99 %d: want version 2's page with the first stored SQLite version", h[0], h[99])
	}
}

// A page 1 that stores a version-valid-for number unlike its counter (a
// file from an old or foreign writer, imported) keeps them unlike as read,
// so that SQLite does not trust its header's page count.
func TestFile_ChangeCounterForeignHeader(t *testing.T) {
	f, err := OpenMain("foreign", Config{Dir: t.TempDir()}, OpenFlags{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Lock(LockExclusive); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	page[27], page[95] = 5, 9
	if _, err := f.WriteAt(page, 0); err != nil {
		t.Fatal(err)
	}
	f.CommitPhaseTwo()
	if err := f.Unlock(LockShared); err != nil {
		t.Fatal(err)
	}
	h := make([]byte, 100)
	if _, err := f.ReadAt(h, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h[24:28], []byte{0, 0, 0, 1}) || !bytes.Equal(h[92:96], []byte{0, 0, 0, 9}) {
		t.Fatalf("counter %x, version-valid-for %x; want the version (1) and the stored 9", h[24:28], h[92:96])
	}
}

// A write transaction becomes a version only if SQLite said it committed
// (SQLITE_FCNTL_COMMIT_PHASETWO); leaving the write lock without that is
// a rollback, whatever the transaction wrote, and the next header read
// tells SQLite to drop its page cache, which may hold the dropped bytes.
func TestFile_RollbackWithoutCommitPhaseTwo(t *testing.T) {
	f, err := OpenMain("rollback", Config{Dir: t.TempDir()}, OpenFlags{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(fill byte, commit bool) {
		t.Helper()
		if err := f.Lock(LockExclusive); err != nil {
			t.Fatal(err)
		}
		for pg := range int64(3) {
			if _, err := f.WriteAt(bytes.Repeat([]byte{fill}, 4096), pg*4096); err != nil {
				t.Fatal(err)
			}
		}
		if commit {
			f.CommitPhaseTwo()
		}
		if err := f.Unlock(LockShared); err != nil {
			t.Fatal(err)
		}
		if err := f.Unlock(LockNone); err != nil {
			t.Fatal(err)
		}
	}
	counter := func() []byte {
		t.Helper()
		c := make([]byte, 16)
		if _, err := f.ReadAt(c, 24); err != nil {
			t.Fatal(err)
		}
		return c
	}
	write(1, true)
	before := counter()
	write(2, false)
	if v, _, _ := f.Volume().Head(); v != 1 {
		t.Fatalf("a transaction SQLite did not commit made version %d", v)
	}
	if got := counter(); bytes.Equal(got, before) {
		t.Fatalf("after a rollback that wrote pages, the header reads as before (%x): SQLite would keep its cache", got)
	}
	if got := counter(); !bytes.Equal(got, before) {
		t.Fatalf("the header read %x after the cache was dropped, want %x", got, before)
	}
	p := make([]byte, 4096)
	if _, err := f.ReadAt(p, 4096); err != nil || p[0] != 1 {
		t.Fatalf("page 2 after the rollback starts with %d (%v), want 1", p[0], err)
	}
	// CommitPhaseTwo outside a write transaction is not remembered for the
	// next one.
	f.CommitPhaseTwo()
	write(3, false)
	if v, _, _ := f.Volume().Head(); v != 1 {
		t.Fatalf("a stale CommitPhaseTwo committed version %d", v)
	}
	write(4, true)
	if v, _, _ := f.Volume().Head(); v != 2 {
		t.Fatalf("a committed transaction left version %d, want 2", v)
	}
}
