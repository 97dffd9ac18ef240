package remote

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	t.Run("Mem", func(t *testing.T) {
		s, err := Open(t.Context(), "mem://TestOpen")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.(*MemStore); !ok {
			t.Errorf("Open(mem://) = %T, want *MemStore", s)
		}
	})
	t.Run("File", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "store dir")
		s, err := Open(t.Context(), "file://"+filepath.ToSlash(strings.ReplaceAll(root, " ", "%20")))
		if err != nil {
			t.Fatal(err)
		}
		fs, ok := s.(*FileStore)
		if !ok || fs.Root() != root {
			t.Errorf("Open(file://) = %T rooted at %v, want *FileStore at %s", s, fs, root)
		}
	})
}

func TestOpen_Invalid(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		says      string // what the error must mention
	}{
		{"Empty", "", "empty URL"},
		{"NoScheme", "bucket/prefix", "missing scheme"},
		{"UnknownScheme", "gs://bucket", `unknown scheme "gs"`},
		{"Unparsable", "s3://bucket/%zz", "invalid URL escape"},
		{"MemNoName", "mem://", "missing store name"},
		{"MemPath", "mem://name/sub", `path "/sub"`},
		{"MemQuery", "mem://name?x=1", `query "x=1"`},
		{"MemOpaque", "mem:name", "want mem://"},
		{"FileRelative", "file://relative/dir", `host "relative"`},
		{"FileHost", "file://host/abs/dir", `host "host"`},
		{"FileNoPath", "file://", "not absolute"},
		{"FileOpaque", "file:relative", "want file://"},
		{"FileQuery", "file:///tmp/x?sync=1", `query "sync=1"`},
		{"FileFragment", "file:///tmp/x#frag", `fragment "frag"`},
		{"FileUserInfo", "file://user@/tmp/x", `user info "user"`},
		// This test binary does not import remote/s3.
		{"S3NotLinked", "s3://bucket/prefix", `import _ "github.com/cambiumdb/cambium/remote/s3"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.url)
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("Open(%q) = %v, %v; want ErrInvalidURL", tc.url, s, err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Open(%q) error %q does not mention %q", tc.url, err, tc.says)
			}
		})
	}
}

func TestRegister(t *testing.T) {
	t.Run("Open", func(t *testing.T) {
		var got []string
		registerForTest(t, "fake", func(_ context.Context, rawURL string, u *url.URL) (Store, error) {
			got = append(got, rawURL+" "+u.Host+" "+u.Path)
			return NewMemStore(), nil
		})
		if _, err := Open(t.Context(), "fake://host/path"); err != nil {
			t.Fatal(err)
		}
		if want := "fake://host/path host /path"; len(got) != 1 || got[0] != want {
			t.Errorf("opener called with %q, want [%q]", got, want)
		}
		// What no store allows is refused before the opener runs.
		for _, bad := range []string{"fake:opaque", "fake://user@host", "fake://host#frag"} {
			if _, err := Open(t.Context(), bad); !errors.Is(err, ErrInvalidURL) {
				t.Errorf("Open(%q) = %v, want ErrInvalidURL", bad, err)
			}
		}
		if len(got) != 1 {
			t.Errorf("opener called for refused URLs: %q", got[1:])
		}
	})
	t.Run("OpenerError", func(t *testing.T) {
		errOpen := errors.New("opener failed")
		registerForTest(t, "fake", func(context.Context, string, *url.URL) (Store, error) { return nil, errOpen })
		if _, err := Open(t.Context(), "fake://host"); err != errOpen {
			t.Errorf("Open = %v, want the opener's error as is", err)
		}
	})
	nop := func(context.Context, string, *url.URL) (Store, error) { return nil, nil }
	for _, tc := range []struct {
		name, scheme string
		open         Opener
	}{
		{"Mem", "mem", nop},
		{"File", "file", nop},
		{"Empty", "", nop},
		{"UpperCase", "Fake", nop},
		{"NilOpener", "fake", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !panics(func() { Register(tc.scheme, tc.open) }) {
				t.Errorf("Register(%q) did not panic", tc.scheme)
			}
		})
	}
	t.Run("Twice", func(t *testing.T) {
		registerForTest(t, "fake", nop)
		if !panics(func() { Register("fake", nop) }) {
			t.Error("second Register(fake) did not panic")
		}
	})
}

// registerForTest registers scheme for the duration of the test.
func registerForTest(t *testing.T, scheme string, open Opener) {
	Register(scheme, open)
	t.Cleanup(func() {
		openers.Lock()
		defer openers.Unlock()
		delete(openers.m, scheme)
	})
}

func panics(f func()) (panicked bool) {
	defer func() { panicked = recover() != nil }()
	f()
	return false
}
