package remote_test

import (
	"errors"
	"testing"

	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/remote/remotetest"
)

func TestMemStore_Conformance(t *testing.T) {
	remotetest.Run(t, func(testing.TB) remote.Store { return remote.NewMemStore() })
}

func TestMemStore_Close(t *testing.T) {
	t.Run("KeepsObjects", func(t *testing.T) {
		s := remote.NewMemStore()
		if err := s.Put(t.Context(), "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(t.Context(), "k"); err != nil || string(got) != "v" {
			t.Errorf("Get after Close = %q, %v; want the object kept", got, err)
		}
	})
}

func TestMemStore_Keys(t *testing.T) {
	t.Run("FlatNamespace", func(t *testing.T) {
		// Unlike FileStore, a MemStore holds a key and keys below it.
		s := remote.NewMemStore()
		for _, key := range []string{"x/y", "x", "x/y/z"} {
			if err := s.Put(t.Context(), key, []byte(key)); err != nil {
				t.Fatalf("Put(%q): %v", key, err)
			}
		}
		objs, err := remote.ListAll(t.Context(), s, "x")
		if err != nil || len(objs) != 3 || objs[0].Key != "x" || objs[1].Key != "x/y" || objs[2].Key != "x/y/z" {
			t.Errorf("ListAll = %v, %v; want x, x/y, x/y/z", objs, err)
		}
	})
}

func TestMemStore_Open(t *testing.T) {
	t.Run("SharedByName", func(t *testing.T) {
		a := mustOpen(t, "mem://TestMemStore_Open-shared")
		b := mustOpen(t, "mem://TestMemStore_Open-shared")
		other := mustOpen(t, "mem://TestMemStore_Open-other")
		if err := a.Put(t.Context(), "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Get(t.Context(), "k"); err != nil || string(got) != "v" {
			t.Errorf("Get through second handle = %q, %v; want v", got, err)
		}
		if _, err := other.Get(t.Context(), "k"); !errors.Is(err, remote.ErrNotFound) {
			t.Errorf("Get in another named store = %v, want ErrNotFound", err)
		}
		c := mustOpen(t, "mem://TestMemStore_Open-shared")
		if got, err := c.Get(t.Context(), "k"); err != nil || string(got) != "v" {
			t.Errorf("Get after reopening = %q, %v; want v", got, err)
		}
	})
}

func mustOpen(t testing.TB, url string) remote.Store {
	t.Helper()
	s, err := remote.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	return s
}
