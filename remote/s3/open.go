package s3

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/cambiumdb/cambium/remote"
)

func init() {
	remote.Register("s3", open)
}

// open is the remote.Opener for s3://bucket[/prefix][?path_style=true|false].
// The URL names only the bucket and key prefix; credentials, region and
// endpoint come from the AWS configuration chain (see Store).
func open(ctx context.Context, rawURL string, u *url.URL) (remote.Store, error) {
	opts, err := parseURL(u)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", remote.ErrInvalidURL, rawURL, err)
	}
	s, err := New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", rawURL, err)
	}
	return s, nil
}

// parseURL reads the bucket, prefix and options of an s3 URL.
func parseURL(u *url.URL) (Options, error) {
	var opts Options
	if u.Host == "" {
		return opts, fmt.Errorf("missing bucket name")
	}
	if err := validateBucket(u.Host); err != nil {
		return opts, fmt.Errorf("bucket %q: %v", u.Host, err)
	}
	opts.Bucket = u.Host

	if prefix := strings.Trim(u.Path, "/"); prefix != "" {
		if err := remote.ValidateKey(prefix); err != nil {
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
