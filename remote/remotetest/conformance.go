// Package remotetest holds the conformance suite that every remote.Store
// implementation and wrapper must pass.
package remotetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/remote"
)

// Run checks every point of the remote.Store contract against the stores
// newStore returns. Each subtest calls newStore once and expects a store that
// holds no objects and that nothing else uses while the subtest runs;
// newStore should register any teardown with t.Cleanup. Run closes each
// store when its subtest ends and checks that Close succeeds.
//
// The suite never stores both a key and a key below it ("a" and "a/b"):
// FileStore refuses the second with ErrInvalidKey, and MinIO accepts it but
// leaves one of the two out of listings.
func Run(t *testing.T, newStore func(t testing.TB) remote.Store) {
	open := func(t *testing.T) remote.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	t.Run("Get", func(t *testing.T) { testGet(t, open) })
	t.Run("GetRange", func(t *testing.T) { testGetRange(t, open) })
	t.Run("Size", func(t *testing.T) { testSize(t, open) })
	t.Run("Put", func(t *testing.T) { testPut(t, open) })
	t.Run("Create", func(t *testing.T) { testCreate(t, open) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, open) })
	t.Run("List", func(t *testing.T) { testList(t, open) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, open) })
	t.Run("Context", func(t *testing.T) { testContext(t, open) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("Model", func(t *testing.T) { testModel(t, open) })
}

type opener func(t *testing.T) remote.Store

func testGet(t *testing.T, open opener) {
	t.Run("OK", func(t *testing.T) {
		s := open(t)
		want := []byte("hello, object")
		mustPut(t, s, "dir/obj", want)
		mustGetEqual(t, s, "dir/obj", want)
	})
	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "empty", nil)
		mustGetEqual(t, s, "empty", nil)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "present", []byte("x"))
		for _, key := range []string{"absent", "present/below", "pres", "presentx"} {
			if data, err := s.Get(t.Context(), key); !errors.Is(err, remote.ErrNotFound) {
				t.Errorf("Get(%q) = %q, %v; want ErrNotFound", key, data, err)
			}
		}
	})
	t.Run("ReturnsCopy", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "obj", []byte("abcdef"))
		got := mustGet(t, s, "obj")
		clear(got)
		mustGetEqual(t, s, "obj", []byte("abcdef"))
	})
	t.Run("Large", func(t *testing.T) {
		s := open(t)
		want := randomBytes(8<<20, 1)
		mustPut(t, s, "large", want)
		mustGetEqual(t, s, "large", want)
		if size := mustSize(t, s, "large"); size != int64(len(want)) {
			t.Errorf("Size = %d, want %d", size, len(want))
		}
		const off, n = 3<<20 + 7, 1<<20 + 3
		got, err := s.GetRange(t.Context(), "large", off, n)
		if err != nil || !bytes.Equal(got, want[off:off+n]) {
			t.Errorf("GetRange(%d, %d) = %d bytes, %v; want the %d bytes at that offset", off, n, len(got), err, n)
		}
	})
}

func testGetRange(t *testing.T, open opener) {
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i)
	}
	t.Run("Ranges", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "obj", data)
		for _, tc := range []struct {
			name           string
			offset, length int64
			want           []byte // nil means an error wrapping ErrInvalidRange
		}{
			{"Start", 0, 10, data[:10]},
			{"Middle", 40, 20, data[40:60]},
			{"Whole", 0, 100, data},
			{"LastByte", 99, 1, data[99:]},
			{"ShortAtEnd", 90, 20, data[90:]},
			{"MaxLength", 50, math.MaxInt64, data[50:]},
			{"OffsetAtEnd", 100, 10, []byte{}},
			{"ZeroLength", 10, 0, []byte{}},
			{"ZeroLengthAtEnd", 100, 0, []byte{}},
			{"PastEnd", 101, 1, nil},
			{"ZeroLengthPastEnd", 101, 0, nil},
			{"FarPastEnd", 1 << 40, 10, nil},
			{"NegativeOffset", -1, 10, nil},
			{"NegativeLength", 0, -1, nil},
			{"MinOffset", math.MinInt64, 1, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.GetRange(t.Context(), "obj", tc.offset, tc.length)
				if tc.want == nil {
					if !errors.Is(err, remote.ErrInvalidRange) {
						t.Errorf("GetRange(%d, %d) = %d bytes, %v; want ErrInvalidRange", tc.offset, tc.length, len(got), err)
					}
					return
				}
				if err != nil || !bytes.Equal(got, tc.want) {
					t.Errorf("GetRange(%d, %d) = %v, %v; want %v", tc.offset, tc.length, got, err, tc.want)
				}
			})
		}
	})
	t.Run("EmptyObject", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "empty", nil)
		for _, length := range []int64{0, 1, 10} {
			if got, err := s.GetRange(t.Context(), "empty", 0, length); err != nil || len(got) != 0 {
				t.Errorf("GetRange(0, %d) = %q, %v; want empty", length, got, err)
			}
		}
		if got, err := s.GetRange(t.Context(), "empty", 1, 1); !errors.Is(err, remote.ErrInvalidRange) {
			t.Errorf("GetRange(1, 1) = %q, %v; want ErrInvalidRange", got, err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		s := open(t)
		for _, length := range []int64{0, 10} {
			if got, err := s.GetRange(t.Context(), "absent", 0, length); !errors.Is(err, remote.ErrNotFound) {
				t.Errorf("GetRange(absent, 0, %d) = %q, %v; want ErrNotFound", length, got, err)
			}
		}
		if got, err := s.GetRange(t.Context(), "absent", 5, 10); !errors.Is(err, remote.ErrNotFound) {
			t.Errorf("GetRange(absent, 5, 10) = %q, %v; want ErrNotFound", got, err)
		}
	})
	t.Run("ReturnsCopy", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "obj", data)
		got, err := s.GetRange(t.Context(), "obj", 10, 10)
		if err != nil {
			t.Fatal(err)
		}
		clear(got)
		mustGetEqual(t, s, "obj", data)
	})
}

func testSize(t *testing.T, open opener) {
	t.Run("OK", func(t *testing.T) {
		s := open(t)
		for key, n := range map[string]int{"zero": 0, "one": 1, "some": 4097} {
			mustPut(t, s, key, make([]byte, n))
			if got := mustSize(t, s, key); got != int64(n) {
				t.Errorf("Size(%q) = %d, want %d", key, got, n)
			}
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "dir/obj", []byte("x"))
		for _, key := range []string{"absent", "dir", "dir/obj/below"} {
			if size, err := s.Size(t.Context(), key); !errors.Is(err, remote.ErrNotFound) {
				t.Errorf("Size(%q) = %d, %v; want ErrNotFound", key, size, err)
			}
		}
	})
}

func testPut(t *testing.T, open opener) {
	t.Run("Overwrite", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "obj", []byte("first version, longer"))
		mustPut(t, s, "obj", []byte("second"))
		mustGetEqual(t, s, "obj", []byte("second"))
		if got := mustSize(t, s, "obj"); got != 6 {
			t.Errorf("Size after overwrite = %d, want 6", got)
		}
		objs := mustListAll(t, s, "")
		if len(objs) != 1 || objs[0].Key != "obj" || objs[0].Size != 6 {
			t.Errorf("List after overwrite = %v, want one object obj of 6 bytes", objs)
		}
	})
	t.Run("OverwriteWithEmpty", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "obj", []byte("data"))
		mustPut(t, s, "obj", []byte{})
		mustGetEqual(t, s, "obj", nil)
	})
	t.Run("KeepsNoReference", func(t *testing.T) {
		s := open(t)
		data := []byte("original")
		mustPut(t, s, "obj", data)
		copy(data, "mutated!")
		mustGetEqual(t, s, "obj", []byte("original"))
	})
}

func testCreate(t *testing.T, open opener) {
	t.Run("OK", func(t *testing.T) {
		s := open(t)
		if err := s.Create(t.Context(), "a/new", []byte("created")); err != nil {
			t.Fatalf("Create: %v", err)
		}
		mustGetEqual(t, s, "a/new", []byte("created"))
	})
	t.Run("ErrExists", func(t *testing.T) {
		s := open(t)
		mustCreate(t, s, "obj", []byte("first"))
		if err := s.Create(t.Context(), "obj", []byte("second")); !errors.Is(err, remote.ErrExists) {
			t.Errorf("second Create = %v, want ErrExists", err)
		}
		if err := s.Create(t.Context(), "obj", nil); !errors.Is(err, remote.ErrExists) {
			t.Errorf("empty Create = %v, want ErrExists", err)
		}
		mustGetEqual(t, s, "obj", []byte("first"))
	})
	t.Run("ErrExistsAfterPut", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "obj", []byte("put"))
		if err := s.Create(t.Context(), "obj", []byte("create")); !errors.Is(err, remote.ErrExists) {
			t.Errorf("Create over Put = %v, want ErrExists", err)
		}
		mustGetEqual(t, s, "obj", []byte("put"))
	})
	t.Run("AfterDelete", func(t *testing.T) {
		s := open(t)
		mustCreate(t, s, "obj", []byte("first"))
		mustDelete(t, s, "obj")
		mustCreate(t, s, "obj", []byte("second"))
		mustGetEqual(t, s, "obj", []byte("second"))
	})
	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		mustCreate(t, s, "empty", nil)
		mustGetEqual(t, s, "empty", nil)
	})
	t.Run("KeepsNoReference", func(t *testing.T) {
		s := open(t)
		data := []byte("original")
		mustCreate(t, s, "obj", data)
		copy(data, "mutated!")
		mustGetEqual(t, s, "obj", []byte("original"))
	})
	t.Run("Race", func(t *testing.T) {
		s := open(t)
		const writers, rounds = 16, 4
		for round := range rounds {
			key := fmt.Sprintf("race/%d", round)
			var (
				start = make(chan struct{})
				wg    sync.WaitGroup
				errs  [writers]error
			)
			for i := range writers {
				wg.Go(func() {
					<-start
					errs[i] = s.Create(t.Context(), key, fmt.Appendf(nil, "writer %d of round %d", i, round))
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Errorf("round %d: writers %d and %d both created %s", round, winner, i, key)
				case err == nil:
					winner = i
				case !errors.Is(err, remote.ErrExists):
					t.Errorf("round %d: writer %d: %v, want nil or ErrExists", round, i, err)
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: no writer created %s", round, key)
			}
			mustGetEqual(t, s, key, fmt.Appendf(nil, "writer %d of round %d", winner, round))
		}
	})
}

func testDelete(t *testing.T, open opener) {
	t.Run("OK", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "d/gone", []byte("x"))
		mustPut(t, s, "d/kept", []byte("y"))
		mustDelete(t, s, "d/gone")
		if _, err := s.Get(t.Context(), "d/gone"); !errors.Is(err, remote.ErrNotFound) {
			t.Errorf("Get after Delete: %v, want ErrNotFound", err)
		}
		if _, err := s.Size(t.Context(), "d/gone"); !errors.Is(err, remote.ErrNotFound) {
			t.Errorf("Size after Delete: %v, want ErrNotFound", err)
		}
		if _, err := s.GetRange(t.Context(), "d/gone", 0, 1); !errors.Is(err, remote.ErrNotFound) {
			t.Errorf("GetRange after Delete: %v, want ErrNotFound", err)
		}
		mustGetEqual(t, s, "d/kept", []byte("y"))
		assertKeys(t, mustListAll(t, s, ""), "d/kept")
	})
	t.Run("Missing", func(t *testing.T) {
		s := open(t)
		mustDelete(t, s, "never/was")
		mustPut(t, s, "once", []byte("x"))
		mustDelete(t, s, "once")
		mustDelete(t, s, "once")
	})
	t.Run("LastInDirectory", func(t *testing.T) {
		// Backends that keep directories must not let an emptied one
		// stand in the way of later keys.
		s := open(t)
		mustPut(t, s, "a/b/c", []byte("x"))
		mustDelete(t, s, "a/b/c")
		assertKeys(t, mustListAll(t, s, ""))
		mustPut(t, s, "a/b/d", []byte("y"))
		mustDelete(t, s, "a/b/d")
		mustPut(t, s, "a/b", []byte("z"))
		mustGetEqual(t, s, "a/b", []byte("z"))
		assertKeys(t, mustListAll(t, s, ""), "a/b")
	})
}

// listKeys is a set of keys whose byte order differs from the order of a
// directory walk, and no key of which is a directory of another.
var listKeys = []string{
	"A", "Z/z", "_", "a-b", "a.b", "a/b", "a/b-c", "a/b0", "a/c-d", "a/c.d",
	"a/c/d", "a/c/e/f", "a/c0", "a0", "ab", "b", "~",
}

func testList(t *testing.T, open opener) {
	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		page, err := s.List(t.Context(), remote.ListOptions{})
		if err != nil || len(page.Objects) != 0 || page.Truncated {
			t.Errorf("List of empty store = %+v, %v; want nothing", page, err)
		}
	})
	t.Run("Order", func(t *testing.T) {
		s := open(t)
		putKeys(t, s, listKeys)
		want := slices.Sorted(slices.Values(listKeys))
		page, err := s.List(t.Context(), remote.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if page.Truncated {
			t.Errorf("List of %d objects is truncated", len(want))
		}
		assertKeys(t, page.Objects, want...)
	})
	t.Run("Prefix", func(t *testing.T) {
		s := open(t)
		putKeys(t, s, listKeys)
		for _, prefix := range []string{"", "a", "a/", "a/b", "a/c", "a/c/", "a/c/e/", "a-", "a/c/d", "Z", "~", "zzz", "a/c/d/"} {
			t.Run(strings.ReplaceAll(prefix, "/", "|"), func(t *testing.T) {
				objs := mustListAll(t, s, prefix)
				assertKeys(t, objs, filterKeys(listKeys, prefix, "")...)
			})
		}
	})
	t.Run("StartAfter", func(t *testing.T) {
		s := open(t)
		putKeys(t, s, listKeys)
		for _, tc := range []struct{ name, prefix, after string }{
			{"First", "", "A"},
			{"Middle", "", "a/b"},
			{"NotAKey", "", "a/bz"},
			{"DirectoryOfKeys", "", "a/c"},
			{"InsideDirectory", "", "a/c/d"},
			{"BeforeAll", "", "0"},
			{"Last", "", "~"},
			{"AfterAll", "", "~~"},
			{"BeforePrefix", "a/", "B"},
			{"InPrefix", "a/", "a/b0"},
			{"AfterPrefix", "a/", "b"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				page, err := s.List(t.Context(), remote.ListOptions{Prefix: tc.prefix, StartAfter: tc.after})
				if err != nil {
					t.Fatal(err)
				}
				assertKeys(t, page.Objects, filterKeys(listKeys, tc.prefix, tc.after)...)
			})
		}
	})
	t.Run("Paging", func(t *testing.T) {
		s := open(t)
		var keys []string
		for i := range 10 {
			keys = append(keys, fmt.Sprintf("p/%02d", i))
		}
		putKeys(t, s, keys)
		mustPut(t, s, "q", []byte("outside the prefix"))
		var got []remote.ObjectInfo
		opts := remote.ListOptions{Prefix: "p/", Limit: 3}
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("paging does not end: %v so far", got)
			}
			page, err := s.List(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Objects) > 3 {
				t.Fatalf("page of %d objects, limit 3", len(page.Objects))
			}
			if len(got)+len(page.Objects) < len(keys) && !page.Truncated {
				t.Fatalf("page ends at %d of %d objects without Truncated", len(got)+len(page.Objects), len(keys))
			}
			got = append(got, page.Objects...)
			if !page.Truncated {
				break
			}
			if len(page.Objects) == 0 {
				t.Fatal("empty page with Truncated set")
			}
			opts.StartAfter = page.Objects[len(page.Objects)-1].Key
		}
		assertKeys(t, got, keys...)
	})
	t.Run("PrefixIsKey", func(t *testing.T) {
		// A prefix that is itself a key, paged one object at a time
		// (MinIO once reported such a page as the last).
		s := open(t)
		putKeys(t, s, []string{"k1", "k1-x", "k1x", "k2"})
		var got []remote.ObjectInfo
		opts := remote.ListOptions{Prefix: "k1", Limit: 1}
		for range 5 {
			page, err := s.List(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page.Objects...)
			if !page.Truncated || len(page.Objects) == 0 {
				break
			}
			opts.StartAfter = page.Objects[len(page.Objects)-1].Key
		}
		assertKeys(t, got, "k1", "k1-x", "k1x")
	})
	t.Run("Many", func(t *testing.T) {
		// More objects than one page holds, to check the default and
		// maximum limits.
		s := open(t)
		n := remote.MaxListLimit + 5
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("m/%05d", i)
		}
		putKeys(t, s, keys)
		for _, limit := range []int{0, remote.MaxListLimit + 1, math.MaxInt} {
			page, err := s.List(t.Context(), remote.ListOptions{Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Objects) == 0 || len(page.Objects) > remote.MaxListLimit || !page.Truncated {
				t.Errorf("Limit %d: %d objects, truncated %v; want 1 to %d, truncated",
					limit, len(page.Objects), page.Truncated, remote.MaxListLimit)
			}
		}
		assertKeys(t, mustListAll(t, s, "m/"), keys...)
	})
	t.Run("SizeAndModified", func(t *testing.T) {
		s := open(t)
		before := time.Now()
		mustPut(t, s, "zero", nil)
		mustPut(t, s, "five", []byte("12345"))
		objs := mustListAll(t, s, "")
		assertKeys(t, objs, "five", "zero")
		for _, o := range objs {
			want := map[string]int64{"zero": 0, "five": 5}[o.Key]
			if o.Size != want {
				t.Errorf("%s: Size %d, want %d", o.Key, o.Size, want)
			}
			// Servers keep their own clock and may round to the
			// second; allow for both.
			if d := o.Modified.Sub(before); d < -time.Hour || d > time.Hour {
				t.Errorf("%s: Modified %v, more than an hour from %v", o.Key, o.Modified, before)
			}
		}
	})
	t.Run("InvalidOptions", func(t *testing.T) {
		s := open(t)
		for _, prefix := range []string{"/", "/a", "a//", "a/../", "a\\"} {
			if _, err := s.List(t.Context(), remote.ListOptions{Prefix: prefix}); !errors.Is(err, remote.ErrInvalidKey) {
				t.Errorf("List(prefix %q) = %v, want ErrInvalidKey", prefix, err)
			}
		}
		if _, err := s.List(t.Context(), remote.ListOptions{Limit: -1}); err == nil {
			t.Error("List(limit -1) succeeded")
		}
	})
}

func testKeys(t *testing.T, open opener) {
	t.Run("ErrInvalidKey", func(t *testing.T) {
		s := open(t)
		for _, tc := range []struct{ name, key string }{
			{"Empty", ""},
			{"Dot", "."},
			{"DotDot", ".."},
			{"DotDotPart", "a/../b"},
			{"DotPart", "a/./b"},
			{"EmptyPart", "a//b"},
			{"LeadingSlash", "/a"},
			{"TrailingSlash", "a/"},
			{"Slash", "/"},
			{"Backslash", "a\\b"},
			{"NUL", "a\x00b"},
			{"Newline", "a\nb"},
			{"DEL", "a\x7fb"},
			{"TooLong", strings.Repeat("k", remote.MaxKeyLen+1)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx := t.Context()
				check := func(method string, err error) {
					t.Helper()
					if !errors.Is(err, remote.ErrInvalidKey) {
						t.Errorf("%s(%q) = %v, want ErrInvalidKey", method, tc.key, err)
					}
				}
				_, err := s.Get(ctx, tc.key)
				check("Get", err)
				_, err = s.GetRange(ctx, tc.key, 0, 1)
				check("GetRange", err)
				_, err = s.Size(ctx, tc.key)
				check("Size", err)
				check("Put", s.Put(ctx, tc.key, []byte("x")))
				check("Create", s.Create(ctx, tc.key, []byte("x")))
				check("Delete", s.Delete(ctx, tc.key))
			})
		}
		assertKeys(t, mustListAll(t, s, ""))
	})
	t.Run("MaxLen", func(t *testing.T) {
		s := open(t)
		// Short parts, since some backends limit the length of one part.
		key := strings.Repeat(strings.Repeat("k", 99)+"/", remote.MaxKeyLen/100)
		key += strings.Repeat("z", remote.MaxKeyLen-len(key))
		if len(key) != remote.MaxKeyLen || remote.ValidateKey(key) != nil {
			t.Fatalf("bad test key of %d bytes: %v", len(key), remote.ValidateKey(key))
		}
		mustPut(t, s, key, []byte("long"))
		mustGetEqual(t, s, key, []byte("long"))
		assertKeys(t, mustListAll(t, s, ""), key)
		mustDelete(t, s, key)
	})
	t.Run("Special", func(t *testing.T) {
		// Characters that URL, XML and path encodings treat specially.
		s := open(t)
		keys := []string{
			"a b", "a+b", "a%2Fb", "a%", "q?x=1&y=2", "h#frag", "c:colon", "s;semi", "at@", "st*r",
			"'quote\"", "<tag>&amp;", "(paren)", "~tilde", ".hidden", "...", "-dash", "ünïcødé/ключ/鍵",
			"emoji/😀", "tab-free\u00a0nbsp",
		}
		for i, key := range keys {
			mustPut(t, s, key, fmt.Appendf(nil, "%d", i))
		}
		for i, key := range keys {
			mustGetEqual(t, s, key, fmt.Appendf(nil, "%d", i))
		}
		assertKeys(t, mustListAll(t, s, ""), slices.Sorted(slices.Values(keys))...)
		for _, key := range keys {
			mustDelete(t, s, key)
		}
		assertKeys(t, mustListAll(t, s, ""))
	})
}

func testContext(t *testing.T, open opener) {
	for _, tc := range []struct {
		name string
		ctx  func() context.Context
		want error
	}{
		{"Canceled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, context.Canceled},
		{"DeadlineExceeded", func() context.Context {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return ctx
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			mustPut(t, s, "obj", []byte("data"))
			ctx := tc.ctx()
			check := func(method string, err error) {
				t.Helper()
				if !errors.Is(err, tc.want) {
					t.Errorf("%s = %v, want an error wrapping %v", method, err, tc.want)
				}
			}
			_, err := s.Get(ctx, "obj")
			check("Get", err)
			_, err = s.GetRange(ctx, "obj", 0, 2)
			check("GetRange", err)
			_, err = s.Size(ctx, "obj")
			check("Size", err)
			check("Put", s.Put(ctx, "new", []byte("x")))
			check("Create", s.Create(ctx, "new2", []byte("x")))
			_, err = s.List(ctx, remote.ListOptions{})
			check("List", err)
			check("Delete", s.Delete(ctx, "obj"))
		})
	}
}

func testConcurrent(t *testing.T, open opener) {
	t.Run("PutGet", func(t *testing.T) {
		// Readers racing with overwrites see whole versions only.
		s := open(t)
		const versions, readers = 24, 4
		mustPut(t, s, "obj", versionData(0))
		var (
			done = make(chan struct{})
			wg   sync.WaitGroup
		)
		wg.Go(func() {
			defer close(done)
			for v := 1; v < versions; v++ {
				if err := s.Put(t.Context(), "obj", versionData(v)); err != nil {
					t.Errorf("Put version %d: %v", v, err)
					return
				}
			}
		})
		for range readers {
			wg.Go(func() {
				for reads := 0; ; reads++ {
					select {
					case <-done:
						if reads > 0 {
							return
						}
					default:
					}
					data, err := s.Get(t.Context(), "obj")
					if err != nil {
						t.Errorf("Get: %v", err)
						return
					}
					if err := checkVersionData(data); err != nil {
						t.Errorf("Get returned a partial or mixed object: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		mustGetEqual(t, s, "obj", versionData(versions-1))
	})
	t.Run("DistinctKeys", func(t *testing.T) {
		// Writers in one directory, deleting as they go, must not
		// disturb each other (a backend that removes empty directories
		// races with writers into them).
		s := open(t)
		const writers, perWriter = 8, 12
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					key := fmt.Sprintf("shared/dir/w%d-%d", w, i)
					var err error
					if i%2 == 0 {
						err = s.Put(t.Context(), key, []byte(key))
					} else {
						err = s.Create(t.Context(), key, []byte(key))
					}
					if err != nil {
						t.Errorf("write %s: %v", key, err)
						return
					}
					if i%3 != 2 {
						if err := s.Delete(t.Context(), key); err != nil {
							t.Errorf("Delete %s: %v", key, err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		var want []string
		for w := range writers {
			for i := range perWriter {
				if i%3 == 2 {
					want = append(want, fmt.Sprintf("shared/dir/w%d-%d", w, i))
				}
			}
		}
		slices.Sort(want)
		assertKeys(t, mustListAll(t, s, ""), want...)
		for _, key := range want {
			mustGetEqual(t, s, key, []byte(key))
		}
	})
}

// testModel applies random operations to the store and to a map, and
// compares every answer.
func testModel(t *testing.T, open opener) {
	s := open(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	// No key is a directory of another, so every backend can hold all.
	keys := []string{"k0", "k1", "k1-x", "k2", "d/k0", "d/k1", "d/e/k0", "d-", "e/k"}
	prefixes := []string{"", "k", "k1", "d", "d/", "d/e/", "e", "z"}
	model := map[string][]byte{}
	ctx := t.Context()
	for step := range 300 {
		key := keys[rng.IntN(len(keys))]
		data := randomBytes(rng.IntN(64), rng.Uint64())
		_, inModel := model[key]
		switch op := rng.IntN(7); op {
		case 0:
			if err := s.Put(ctx, key, data); err != nil {
				t.Fatalf("step %d: Put(%s): %v", step, key, err)
			}
			model[key] = data
		case 1:
			err := s.Create(ctx, key, data)
			switch {
			case inModel && !errors.Is(err, remote.ErrExists):
				t.Fatalf("step %d: Create(%s) of existing = %v", step, key, err)
			case !inModel && err != nil:
				t.Fatalf("step %d: Create(%s) = %v", step, key, err)
			case !inModel:
				model[key] = data
			}
		case 2:
			if err := s.Delete(ctx, key); err != nil {
				t.Fatalf("step %d: Delete(%s): %v", step, key, err)
			}
			delete(model, key)
		case 3:
			got, err := s.Get(ctx, key)
			want, ok := model[key]
			if ok && (err != nil || !bytes.Equal(got, want)) || !ok && !errors.Is(err, remote.ErrNotFound) {
				t.Fatalf("step %d: Get(%s) = %q, %v; model has %q, %v", step, key, got, err, want, ok)
			}
		case 4:
			want, ok := model[key]
			off, n := int64(rng.IntN(70)), int64(rng.IntN(70))
			got, err := s.GetRange(ctx, key, off, n)
			switch {
			case !ok:
				if !errors.Is(err, remote.ErrNotFound) {
					t.Fatalf("step %d: GetRange(%s) = %v, want ErrNotFound", step, key, err)
				}
			case off > int64(len(want)):
				if !errors.Is(err, remote.ErrInvalidRange) {
					t.Fatalf("step %d: GetRange(%s, %d, %d) of %d bytes = %v, want ErrInvalidRange", step, key, off, n, len(want), err)
				}
			default:
				if w := want[off:min(off+n, int64(len(want)))]; err != nil || !bytes.Equal(got, w) {
					t.Fatalf("step %d: GetRange(%s, %d, %d) = %q, %v; want %q", step, key, off, n, got, err, w)
				}
			}
		case 5:
			size, err := s.Size(ctx, key)
			want, ok := model[key]
			if ok && (err != nil || size != int64(len(want))) || !ok && !errors.Is(err, remote.ErrNotFound) {
				t.Fatalf("step %d: Size(%s) = %d, %v; model has %d bytes, %v", step, key, size, err, len(want), ok)
			}
		case 6:
			opts := remote.ListOptions{Prefix: prefixes[rng.IntN(len(prefixes))], Limit: rng.IntN(4)}
			if rng.IntN(2) == 0 {
				opts.StartAfter = keys[rng.IntN(len(keys))]
			}
			page, err := s.List(ctx, opts)
			if err != nil {
				t.Fatalf("step %d: List(%+v): %v", step, opts, err)
			}
			want := filterKeys(slices.Collect(maps.Keys(model)), opts.Prefix, opts.StartAfter)
			n := len(want)
			if opts.Limit > 0 {
				n = min(n, opts.Limit)
			}
			var got []string
			for _, o := range page.Objects {
				got = append(got, o.Key)
				if o.Size != int64(len(model[o.Key])) {
					t.Fatalf("step %d: List: %s has size %d, model %d", step, o.Key, o.Size, len(model[o.Key]))
				}
			}
			if !slices.Equal(got, want[:n]) || (n < len(want) && !page.Truncated) {
				t.Fatalf("step %d: List(%+v) = %q, truncated %v; want %q of %q", step, opts, got, page.Truncated, want[:n], want)
			}
		}
	}
}

// versionData returns the object for version v of the PutGet test: a
// length that differs per version, and a header and fill that name v, so
// that any prefix or mixture of versions is detectable.
func versionData(v int) []byte {
	n := 64<<10 + v*4099
	data := bytes.Repeat([]byte{byte(v)}, n)
	copy(data, fmt.Sprintf("version %04d length %08d|", v, n))
	return data
}

func checkVersionData(data []byte) error {
	header, _, _ := bytes.Cut(data[:min(len(data), 64)], []byte("|"))
	var v, n int
	if _, err := fmt.Sscanf(string(header), "version %d length %d", &v, &n); err != nil {
		return fmt.Errorf("%d bytes with bad header %q: %v", len(data), header, err)
	}
	if !bytes.Equal(data, versionData(v)) {
		return fmt.Errorf("version %d: %d bytes, want %d with fill %d", v, len(data), n, v)
	}
	return nil
}

// filterKeys returns, sorted, the keys that begin with prefix and sort after
// after.
func filterKeys(keys []string, prefix, after string) []string {
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) && k > after {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func putKeys(t testing.TB, s remote.Store, keys []string) {
	t.Helper()
	// Sixteen writers keep a thousand objects quick on a network store.
	var (
		wg   sync.WaitGroup
		next = make(chan string)
	)
	for range 16 {
		wg.Go(func() {
			for key := range next {
				if err := s.Put(context.Background(), key, []byte(key)); err != nil {
					t.Errorf("Put(%q): %v", key, err)
				}
			}
		})
	}
	for _, key := range keys {
		next <- key
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

func assertKeys(t testing.TB, objs []remote.ObjectInfo, want ...string) {
	t.Helper()
	got := make([]string, len(objs))
	for i, o := range objs {
		got[i] = o.Key
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed keys:\n  got  %q\n  want %q", got, want)
	}
}

func mustListAll(t testing.TB, s remote.Store, prefix string) []remote.ObjectInfo {
	t.Helper()
	objs, err := remote.ListAll(context.Background(), s, prefix)
	if err != nil {
		t.Fatalf("ListAll(%q): %v", prefix, err)
	}
	return objs
}

func mustPut(t testing.TB, s remote.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, data); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustCreate(t testing.TB, s remote.Store, key string, data []byte) {
	t.Helper()
	if err := s.Create(context.Background(), key, data); err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
}

func mustDelete(t testing.TB, s remote.Store, key string) {
	t.Helper()
	if err := s.Delete(context.Background(), key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
}

func mustGet(t testing.TB, s remote.Store, key string) []byte {
	t.Helper()
	data, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return data
}

func mustGetEqual(t testing.TB, s remote.Store, key string, want []byte) {
	t.Helper()
	if got := mustGet(t, s, key); !bytes.Equal(got, want) {
		t.Errorf("Get(%q) = %s, want %s", key, abbrev(got), abbrev(want))
	}
}

func mustSize(t testing.TB, s remote.Store, key string) int64 {
	t.Helper()
	size, err := s.Size(context.Background(), key)
	if err != nil {
		t.Fatalf("Size(%q): %v", key, err)
	}
	return size
}

// abbrev shows a byte slice in an error message without flooding it.
func abbrev(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q... (%d bytes)", b[:64], len(b))
}
