package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/internal/testminio"
	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/segment"
)

func TestMain(m *testing.M) { testminio.Main(m) }

// stores returns the object stores every replication test runs against:
// a local directory and a real S3-compatible server.
func stores(t *testing.T) map[string]func(t *testing.T) remote.Store {
	return map[string]func(t *testing.T) remote.Store{
		"file": func(t *testing.T) remote.Store {
			s, err := remote.NewFileStore(filepath.Join(t.TempDir(), "remote"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"minio": func(t *testing.T) remote.Store {
			srv := testminio.Shared(t)
			srv.Env(t)
			s, err := remote.Open(context.Background(), "s3://"+srv.NewBucket(t)+"/cambium")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// commitPages commits one version writing the given pages, each filled
// with its tag, and returns the new version.
func commitPages(t *testing.T, v *Volume, tag byte, pages ...PageNo) Version {
	t.Helper()
	base := v.Snapshot()
	defer base.Release()
	txn, err := v.Begin(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		if err := txn.WritePage(p, bytes.Repeat([]byte{tag + byte(p)}, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := txn.Commit(Buffered)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	return s.Version()
}

// remoteCommits lists and decodes a volume's remote commit records.
func remoteCommits(t *testing.T, store remote.Store, volume string) []remoteCommit {
	t.Helper()
	ctx := context.Background()
	objs, err := remote.ListAll(ctx, store, remotePrefix(volume)+"c/")
	if err != nil {
		t.Fatal(err)
	}
	var out []remoteCommit
	for _, o := range objs {
		b, err := store.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := decodeRemoteCommit(o.Key, b)
		if err != nil {
			t.Fatal(err)
		}
		if o.Key != remoteCommitKey(volume, c.parent) {
			t.Fatalf("record %s claims parent %d", o.Key, c.parent)
		}
		out = append(out, c)
	}
	return out
}

// checkRemoteChain asserts the remote commits form one gap-free chain from
// version 0 to want, and that every segment holds exactly its changeset
// with the bytes the local snapshot at that version has.
func checkRemoteChain(t *testing.T, store remote.Store, v *Volume, want Version) {
	t.Helper()
	ctx := context.Background()
	next := Version(0)
	for _, c := range remoteCommits(t, store, v.name) {
		if c.parent != next {
			t.Fatalf("chain broken: commit with parent %d follows version %d", c.parent, next)
		}
		seg, err := store.Get(ctx, remoteSegmentKey(v.name, c.segment))
		if err != nil {
			t.Fatalf("segment of version %d: %v", c.version, err)
		}
		if int64(len(seg)) != c.segmentSize {
			t.Fatalf("segment of version %d is %d bytes, record says %d", c.version, len(seg), c.segmentSize)
		}
		footer, err := segment.ReadFooter(bytes.NewReader(seg), int64(len(seg)))
		if err != nil {
			t.Fatal(err)
		}
		if !footer.Pages.Equals(c.changeset) {
			t.Fatalf("segment of version %d holds %v, changeset %v", c.version, footer.Pages.ToArray(), c.changeset.ToArray())
		}
		next = c.version
	}
	if next != want {
		t.Fatalf("remote chain ends at %d, want %d", next, want)
	}
}

func TestVolume_Push(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := newStore(t)
			e := openTestEngine(t, t.TempDir(), Options{})
			defer e.Close()
			v, _ := e.Volume("tenant/42.db")
			if res, err := v.Push(ctx, store); err != nil || res.To != 0 {
				t.Fatalf("push of an empty volume: %+v %v", res, err)
			}
			commitPages(t, v, 1, 1, 2, 3)
			commitPages(t, v, 2, 2, 4)
			h := commitPages(t, v, 3, 2)
			res, err := v.Push(ctx, store)
			if err != nil {
				t.Fatal(err)
			}
			if res.From != 0 || res.To != h || res.Pages != 4 || res.Requests != 2 || res.BytesWritten == 0 {
				t.Fatalf("first push: %+v", res)
			}
			// Nothing new: nothing sent.
			if res, err := v.Push(ctx, store); err != nil || res.From != h || res.To != h || res.Requests != 0 {
				t.Fatalf("second push: %+v %v", res, err)
			}
			// Pages 2 and 5 change; a truncation follows.
			commitPages(t, v, 4, 2, 5)
			base := v.Snapshot()
			txn, _ := v.Begin(base)
			txn.Truncate(4)
			s, err := txn.Commit(Buffered)
			if err != nil {
				t.Fatal(err)
			}
			h2 := s.Version()
			s.Release()
			base.Release()
			res, err = v.Push(ctx, store)
			if err != nil || res.From != h || res.To != h2 || res.Pages != 1 {
				t.Fatalf("third push: %+v %v (want page 2 only: 5 was cut off)", res, err)
			}
			checkRemoteChain(t, store, v, h2)
			last := remoteCommits(t, store, v.name)
			if c := last[len(last)-1]; c.pageCount != 4 || !c.changeset.Equals(roaring.BitmapOf(2)) {
				t.Fatalf("last remote commit: %d pages, changeset %v", c.pageCount, c.changeset.ToArray())
			}
			if pushed, diverged, err := v.Replication(); err != nil || pushed != h2 || diverged {
				t.Fatalf("replication state: %d %v %v", pushed, diverged, err)
			}
		})
	}
}

// A push whose claim's response is lost, or that fails before the claim,
// completes on retry without a duplicate or a gap, also across a restart.
func TestVolume_PushRetry(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		fault remote.Fault
	}{{"LostResponse", remote.FailAfter}, {"FailedClaim", remote.FailBefore}} {
		t.Run(c.name, func(t *testing.T) {
			mem := remote.NewMemStore()
			faulty := remote.NewFaultStore(mem, remote.Nth(remote.OpCreate, "", 1, 1, remote.Action{Fault: c.fault}))
			dir := t.TempDir()
			e := openTestEngine(t, dir, Options{})
			v, _ := e.Volume("retry")
			h := commitPages(t, v, 1, 1, 2)
			if _, err := v.Push(ctx, faulty); !errors.Is(err, remote.ErrInjected) {
				t.Fatalf("first push: %v, want the injected fault", err)
			}
			// Restart between the failed push and its retry.
			e.Close()
			e = openTestEngine(t, dir, Options{})
			defer e.Close()
			v, _ = e.Volume("retry")
			res, err := v.Push(ctx, faulty)
			if err != nil || res.To != h {
				t.Fatalf("retry: %+v %v", res, err)
			}
			segs, _ := remote.ListAll(ctx, mem, remotePrefix("retry")+"s/")
			if len(segs) != 1 {
				t.Fatalf("%d segments uploaded; the retry must reuse the first", len(segs))
			}
			checkRemoteChain(t, mem, v, h)
		})
	}
}

// Two writers, one remote: exactly one claims each version; the other is
// told it diverged, keeps its local commits, and changes nothing remotely.
func TestVolume_PushDiverged(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := newStore(t)
			a := openTestEngine(t, t.TempDir(), Options{})
			defer a.Close()
			b := openTestEngine(t, t.TempDir(), Options{})
			defer b.Close()
			va, _ := a.Volume("shared")
			vb, _ := b.Volume("shared")
			ha := commitPages(t, va, 1, 1, 2)
			commitPages(t, vb, 9, 1)
			hb := commitPages(t, vb, 9, 3)
			if _, err := va.Push(ctx, store); err != nil {
				t.Fatal(err)
			}
			before, _ := store.Get(ctx, remoteCommitKey("shared", 0))
			for range 2 {
				if _, err := vb.Push(ctx, store); !errors.Is(err, ErrDiverged) {
					t.Fatalf("loser's push: %v, want ErrDiverged", err)
				}
			}
			after, _ := store.Get(ctx, remoteCommitKey("shared", 0))
			if !bytes.Equal(before, after) {
				t.Fatal("the loser changed the winner's commit")
			}
			if h, _, _ := vb.Head(); h != hb {
				t.Fatalf("loser's head %d, want its own %d kept", h, hb)
			}
			if _, diverged, _ := vb.Replication(); !diverged {
				t.Fatal("loser not marked diverged")
			}
			checkRemoteChain(t, store, va, ha)
		})
	}
}

func TestRemoteCommit_ErrCorrupt(t *testing.T) {
	c := remoteCommit{parent: 3, version: 7, pageCount: 9, pageSize: 4096, changeset: roaring.BitmapOf(1, 9)}
	b, err := c.encode()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeRemoteCommit("ok", b); err != nil || got.version != 7 || !got.changeset.Equals(c.changeset) {
		t.Fatalf("%+v %v", got, err)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x08
		if _, err := decodeRemoteCommit(fmt.Sprintf("byte %d", i), bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := decodeRemoteCommit("short", b[:20]); !errors.Is(err, ErrCorrupt) {
		t.Fatal("a truncated record was accepted")
	}
}
