package remote

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// Open returns the store a URL names:
//
//	mem://NAME                    the process-wide MemStore called NAME
//	file:///abs/path              a FileStore rooted at /abs/path
//	s3://bucket[/prefix][?path_style=true|false]
//
// An s3 URL names only the bucket and key prefix; credentials, region and
// endpoint come from the AWS configuration chain (see S3Store). Every error
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
	switch u.Scheme {
	case "mem", "file", "s3":
	case "":
		return nil, bad("missing scheme; want mem://, file:// or s3://")
	default:
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

	default: // s3
		opts, err := parseS3URL(u)
		if err != nil {
			return nil, bad("%v", err)
		}
		s, err := NewS3Store(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", rawURL, err)
		}
		return s, nil
	}
}

// parseS3URL reads the bucket, prefix and options of an s3 URL.
func parseS3URL(u *url.URL) (S3Options, error) {
	var opts S3Options
	if u.Host == "" {
		return opts, fmt.Errorf("missing bucket name")
	}
	if err := validateBucket(u.Host); err != nil {
		return opts, fmt.Errorf("bucket %q: %v", u.Host, err)
	}
	opts.Bucket = u.Host

	if prefix := strings.Trim(u.Path, "/"); prefix != "" {
		if err := ValidateKey(prefix); err != nil {
			return opts, fmt.Errorf("prefix %q: %v", prefix, err)
		}
		// The prefix is a whole number of key parts, so that s3://b/x
		// and s3://b/xy never share objects.
		opts.Prefix = prefix + "/"
	}

	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return opts, fmt.Errorf("query %q: %v", u.RawQuery, err)
	}
	for name, values := range query {
		if name != "path_style" {
			return opts, fmt.Errorf("unknown query parameter %q; the only one is path_style", name)
		}
		if len(values) != 1 {
			return opts, fmt.Errorf("query parameter %q given %d times", name, len(values))
		}
		var on bool
		switch values[0] {
		case "true":
			on = true
		case "false":
		default:
			return opts, fmt.Errorf("query parameter path_style=%q; want true or false", values[0])
		}
		opts.PathStyle = &on
	}
	return opts, nil
}

// validateBucket checks name against the S3 bucket naming rules
// (general purpose buckets), which S3-compatible servers share.
func validateBucket(name string) error {
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("length %d is outside 3 to 63", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("character %q at offset %d; only lower-case letters, digits, '-' and '.' are allowed", c, i)
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return fmt.Errorf("must begin and end with a letter or digit")
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("must not contain \"..\"")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("must not be an IP address")
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
