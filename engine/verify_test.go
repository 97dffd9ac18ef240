package engine

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// verifyFixture is a volume of pages pages of distinct bytes in one commit,
// pushed to a MemStore.
func verifyFixture(t *testing.T, dir string, pages int) (*Engine, *Volume, *remote.MemStore) {
	t.Helper()
	e, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	v, err := e.Volume("acme/v.db")
	if err != nil {
		t.Fatal(err)
	}
	base := v.Snapshot()
	txn, err := v.Begin(base)
	if err != nil {
		t.Fatal(err)
	}
	for p := 1; p <= pages; p++ {
		page := make([]byte, 4096)
		for i := range page {
			page[i] = byte(p*31 + i*7)
		}
		if err := txn.WritePage(PageNo(p), page); err != nil {
			t.Fatal(err)
		}
	}
	next, err := txn.Commit(Durable)
	if err != nil {
		t.Fatal(err)
	}
	next.Release()
	base.Release()
	store := remote.NewMemStore()
	if err := v.Attach("mem://verify", store); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, v, store
}

// damage flips bytes in the middle of an object of store.
func damage(t *testing.T, store remote.Store, key string) {
	t.Helper()
	ctx := context.Background()
	b, err := store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+8; i++ {
		b[i] ^= 0xa5
	}
	if err := store.Put(ctx, key, b); err != nil {
		t.Fatal(err)
	}
}

func TestVolume_Verify(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		_, v, _ := verifyFixture(t, t.TempDir(), 100)
		res, err := v.Verify(ctx, VerifyOptions{Remote: true})
		if err != nil || !res.OK() || res.Version != 1 || res.LocalPages != 100 || res.Frames != 100 ||
			res.RemoteVersion != 1 || res.Segments != 1 || res.RemoteObjects != 1 || res.Commits != 1 {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("Sparse", func(t *testing.T) {
		e, err := Open(Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		v, _ := e.Volume("sparse.db")
		for _, step := range []func(*Txn) error{
			func(txn *Txn) error { txn.WritePage(1, make([]byte, 512)); return txn.WritePage(50, make([]byte, 512)) },
			func(txn *Txn) error { return txn.Truncate(30) },
		} {
			base := v.Snapshot()
			txn, err := v.Begin(base)
			if err != nil {
				t.Fatal(err)
			}
			if err := step(txn); err != nil {
				t.Fatal(err)
			}
			next, err := txn.Commit(Durable)
			if err != nil {
				t.Fatal(err)
			}
			next.Release()
			base.Release()
		}
		res, err := v.Verify(ctx, VerifyOptions{})
		if err != nil || !res.OK() || res.Pages != 30 || res.LocalPages != 1 || res.ZeroPages != 29 || res.Commits != 2 {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("ErrNoRemote", func(t *testing.T) {
		e, err := Open(Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		v, _ := e.Volume("x")
		if _, err := v.Verify(ctx, VerifyOptions{Remote: true}); !errors.Is(err, ErrNoRemote) {
			t.Fatalf("Verify with Remote and no remote: %v", err)
		}
	})
	t.Run("ErrRemoteCorruptFrame", func(t *testing.T) {
		_, v, store := verifyFixture(t, t.TempDir(), 100)
		objs, _ := remote.ListAll(ctx, store, manifest.SegmentPrefix(v.Name()))
		damage(t, store, objs[0].Key)
		res, err := v.Verify(ctx, VerifyOptions{Remote: true})
		if err != nil || res.OK() || res.ProblemCount != 1 || res.Frames != 99 ||
			!strings.Contains(res.Problems[0], objs[0].Key) || !strings.Contains(res.Problems[0], "checksum") {
			t.Fatalf("%+v, %v", res, err)
		}
		// Local data is sound.
		if res, err := v.Verify(ctx, VerifyOptions{}); err != nil || !res.OK() {
			t.Fatalf("local only: %+v, %v", res, err)
		}
	})
	t.Run("ErrRemoteCorruptCommit", func(t *testing.T) {
		_, v, store := verifyFixture(t, t.TempDir(), 10)
		damage(t, store, manifest.CommitKey(v.Name(), 0))
		res, err := v.Verify(ctx, VerifyOptions{Remote: true})
		if err != nil || res.ProblemCount != 1 || !strings.Contains(res.Problems[0], "remote commit") {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("ErrCorrupt", func(t *testing.T) {
		dir := t.TempDir()
		e, _, _ := verifyFixture(t, dir, 100)
		if err := e.Flush(); err != nil {
			t.Fatal(err)
		}
		e.Close()
		n := 0
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !strings.HasSuffix(p, ".sst") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for i := len(b) / 2; i < len(b)/2+8; i++ {
				b[i] ^= 0xa5
			}
			n++
			return os.WriteFile(p, b, 0o644)
		})
		if n == 0 {
			t.Fatal("no table file after Flush")
		}
		// Pebble logs the corruption it finds; Verify reports it.
		e, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		v, _ := e.Volume("acme/v.db")
		res, err := v.Verify(ctx, VerifyOptions{})
		if err != nil || res.ProblemCount != 1 || res.LocalPages != 99 || !strings.Contains(res.Problems[0], "checksum mismatch") {
			t.Fatalf("%+v, %v", res, err)
		}
	})
}

func TestVolume_Log(t *testing.T) {
	e, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v, _ := e.Volume("log.db")
	if log, err := v.Log(); err != nil || len(log) != 0 {
		t.Fatalf("log of an empty volume: %v, %v", log, err)
	}
	for i := 1; i <= 3; i++ {
		base := v.Snapshot()
		txn, err := v.Begin(base)
		if err != nil {
			t.Fatal(err)
		}
		for p := 1; p <= i; p++ {
			txn.WritePage(PageNo(p), make([]byte, 512))
			txn.WritePage(PageNo(p), append(make([]byte, 511), byte(i)))
		}
		next, err := txn.Commit(Durable)
		if err != nil {
			t.Fatal(err)
		}
		next.Release()
		base.Release()
	}
	log, err := v.Log()
	if err != nil || len(log) != 3 {
		t.Fatalf("%v, %v", log, err)
	}
	for i, c := range log {
		if c.Version != Version(i+1) || c.Parent != Version(i) || c.PageCount != uint32(i+1) || c.PageSize != 512 ||
			c.PagesChanged != i+1 || c.Time.IsZero() {
			t.Errorf("commit %d: %+v", i, c)
		}
	}
}

func TestListRemoteVolumes(t *testing.T) {
	ctx := context.Background()
	_, v, store := verifyFixture(t, t.TempDir(), 20)
	e2, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	w, _ := e2.Volume("b a/c%d.db")
	base := w.Snapshot()
	txn, _ := w.Begin(base)
	txn.WritePage(3, make([]byte, 1024))
	next, err := txn.Commit(Durable)
	if err != nil {
		t.Fatal(err)
	}
	next.Release()
	base.Release()
	w.Attach("mem://verify", store)
	if _, err := w.Push(ctx); err != nil {
		t.Fatal(err)
	}
	store.Put(ctx, "v/not%zzvalid/c/0000000000000000", []byte("x")) // not a volume's key

	vols, err := ListRemoteVolumes(ctx, store)
	if err != nil || len(vols) != 2 {
		t.Fatalf("%+v, %v", vols, err)
	}
	if a := vols[0]; a.Name != v.Name() || a.Version != 1 || a.PageCount != 20 || a.PageSize != 4096 || a.Commits != 1 || a.Objects != 2 || a.Bytes == 0 || a.Err != nil {
		t.Errorf("%+v", a)
	}
	if b := vols[1]; b.Name != "b a/c%d.db" || b.PageCount != 3 || b.PageSize != 1024 || b.Time.IsZero() {
		t.Errorf("%+v", b)
	}
	rv, err := StatRemoteVolume(ctx, store, "b a/c%d.db")
	if err != nil || rv != vols[1] {
		t.Errorf("StatRemoteVolume: %+v, %v", rv, err)
	}
	if rv, err := StatRemoteVolume(ctx, store, "none.db"); err != nil || rv.Objects != 0 || rv.Name != "none.db" {
		t.Errorf("StatRemoteVolume of a missing volume: %+v, %v", rv, err)
	}
	damage(t, store, manifest.CommitKey(v.Name(), 0))
	if vols, err := ListRemoteVolumes(ctx, store); err != nil || vols[0].Err == nil || vols[0].Version != 0 {
		t.Errorf("a damaged newest commit: %+v, %v", vols, err)
	}
}
