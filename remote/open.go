package remote

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
)

// An Opener returns the store that a URL of its scheme names. Open calls it
// with the URL as given and as parsed, after refusing what no store allows
// (an opaque URL, user info, a fragment). Errors about the URL itself wrap
// ErrInvalidURL and read like Open's own: fmt.Errorf("%w: %q: %s",
// ErrInvalidURL, rawURL, what is wrong).
type Opener func(ctx context.Context, rawURL string, u *url.URL) (Store, error)

// openers holds the schemes that backend packages registered. Open finds
// a backend here rather than by importing it, so that remote, and whatever
// imports only remote (the engine), does not link the S3 SDK.
var openers struct {
	sync.RWMutex
	m map[string]Opener
}

// Register makes Open hand URLs of scheme (lower case, as url.Parse
// leaves it) to open. Backends call it from init, so that importing the
// backend's package is what makes its scheme work:
//
//	import _ "github.com/cambiumdb/cambium/remote/s3" // s3://
//
// Registering a scheme twice, or mem or file, which Open handles itself,
// panics: two backends for one scheme is a mistake in how the program is
// put together.
func Register(scheme string, open Opener) {
	if scheme == "" || scheme != strings.ToLower(scheme) || open == nil {
		panic(fmt.Sprintf("remote: Register(%q): want a lower-case scheme and an opener", scheme))
	}
	if scheme == "mem" || scheme == "file" {
		panic(fmt.Sprintf("remote: Register(%q): built into Open", scheme))
	}
	openers.Lock()
	defer openers.Unlock()
	if _, dup := openers.m[scheme]; dup {
		panic(fmt.Sprintf("remote: Register(%q) called twice", scheme))
	}
	if openers.m == nil {
		openers.m = make(map[string]Opener)
	}
	openers.m[scheme] = open
}

func registered(scheme string) Opener {
	openers.RLock()
	defer openers.RUnlock()
	return openers.m[scheme]
}

// s3Package is the backend for s3:// URLs, named in the error for a
// program that does not import it.
const s3Package = "github.com/cambiumdb/cambium/remote/s3"

// Open returns the store a URL names:
//
//	mem://NAME                    the process-wide MemStore called NAME
//	file:///abs/path              a FileStore rooted at /abs/path
//	s3://bucket[/prefix][?path_style=true|false]
//	                              an S3 store, from package remote/s3,
//	                              which the program must import
//
// and any other scheme a backend has registered (see Register). Every error
// about the URL itself wraps ErrInvalidURL and names the part at fault.
func Open(ctx context.Context, rawURL string) (Store, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("%w: empty URL", ErrInvalidURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidURL, rawURL, unwrapURLError(err))
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %q: %s", ErrInvalidURL, rawURL, fmt.Sprintf(format, args...))
	}
	var open Opener
	switch u.Scheme {
	case "mem", "file":
	case "":
		return nil, bad("missing scheme; want mem://, file:// or s3://")
	default:
		if open = registered(u.Scheme); open != nil {
			break
		}
		if u.Scheme == "s3" {
			return nil, bad("s3 stores are not linked into this program; import _ %q", s3Package)
		}
		return nil, bad("unknown scheme %q; want mem, file or s3", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, bad("want %s://..., not %s:%s", u.Scheme, u.Scheme, u.Opaque)
	}
	if u.User != nil {
		return nil, bad("user info %q is not allowed; credentials come from the environment", u.User.Username())
	}
	if u.Fragment != "" {
		return nil, bad("fragment %q is not allowed", u.Fragment)
	}

	switch u.Scheme {
	case "mem":
		if u.Host == "" {
			return nil, bad("missing store name; want mem://NAME")
		}
		if u.Path != "" {
			return nil, bad("path %q is not allowed; want mem://NAME", u.Path)
		}
		if u.RawQuery != "" || u.ForceQuery {
			return nil, bad("query %q is not allowed", u.RawQuery)
		}
		return sharedMemStore(u.Host), nil

	case "file":
		if u.Host != "" {
			return nil, bad("host %q is not allowed; want file:///absolute/path", u.Host)
		}
		if u.RawQuery != "" || u.ForceQuery {
			return nil, bad("query %q is not allowed", u.RawQuery)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return nil, bad("path %q is not absolute; want file:///absolute/path", u.Path)
		}
		s, err := NewFileStore(u.Path)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", rawURL, err)
		}
		return s, nil

	default:
		return open(ctx, rawURL, u)
	}
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
