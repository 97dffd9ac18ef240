package s3

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cambiumdb/cambium/remote"
)

func TestOpen(t *testing.T) {
	isolateAWSEnv(t)
	s, err := remote.Open(t.Context(), "s3://my-bucket/db/one/?path_style=false")
	if err != nil {
		t.Fatal(err)
	}
	s3s, ok := s.(*Store)
	if !ok || s3s.bucket != "my-bucket" || s3s.prefix != "db/one/" || s3s.client.Options().UsePathStyle {
		t.Errorf("Open(s3://) = %T %+v, want bucket my-bucket, prefix db/one/, virtual-host style", s, s3s)
	}
}

func TestOpen_Invalid(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		says      string // what the error must mention
	}{
		{"NoBucket", "s3://", "missing bucket name"},
		{"NoBucketWithPath", "s3:///prefix", "missing bucket name"},
		{"BucketUpper", "s3://MyBucket", `bucket "MyBucket": character 'M'`},
		{"BucketShort", "s3://ab", `bucket "ab": length 2`},
		{"BucketLong", "s3://" + strings.Repeat("b", 64), "length 64"},
		{"BucketUnderscore", "s3://my_bucket", `character '_'`},
		{"BucketEdge", "s3://-bucket", "begin and end"},
		{"BucketDots", "s3://my..bucket", `".."`},
		{"BucketIP", "s3://192.168.1.1", "IP address"},
		{"BucketPort", "s3://bucket:9000", `character ':'`},
		{"Credentials", "s3://key:secret@bucket", `user info "key"`},
		{"Opaque", "s3:bucket", "want s3://"},
		{"Fragment", "s3://bucket#frag", `fragment "frag"`},
		{"PrefixEmptyPart", "s3://bucket/a//b", `prefix "a//b"`},
		{"PrefixDotDot", "s3://bucket/a/../b", `prefix "a/../b"`},
		{"PrefixControl", "s3://bucket/a%01b", `prefix "a\x01b"`},
		{"UnknownParam", "s3://bucket?region=eu-west-1", `unknown query parameter "region"`},
		{"PathStyleValue", "s3://bucket?path_style=yes", `path_style="yes"`},
		{"PathStyleTwice", "s3://bucket?path_style=true&path_style=false", "given 2 times"},
		{"BadQuery", "s3://bucket?path_style=%zz", "query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWSEnv(t)
			s, err := remote.Open(t.Context(), tc.url)
			if !errors.Is(err, remote.ErrInvalidURL) {
				t.Fatalf("Open(%q) = %v, %v; want ErrInvalidURL", tc.url, s, err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Open(%q) error %q does not mention %q", tc.url, err, tc.says)
			}
			// Errors name the URL as given, like remote.Open's own.
			if want := fmt.Sprintf("%v: %q: ", remote.ErrInvalidURL, tc.url); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Open(%q) error %q does not start with %q", tc.url, err, want)
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url, bucket, prefix string
		pathStyle           *bool
	}{
		{"s3://bucket", "bucket", "", nil},
		{"s3://bucket/", "bucket", "", nil},
		{"s3://my.bucket-1/db", "my.bucket-1", "db/", nil},
		{"s3://bucket/db/one/", "bucket", "db/one/", nil},
		{"s3://bucket//db/one//", "bucket", "db/one/", nil},
		{"s3://bucket/db%20one?path_style=true", "bucket", "db one/", ptr(true)},
		{"s3://bucket?path_style=false", "bucket", "", ptr(false)},
	} {
		t.Run(tc.url, func(t *testing.T) {
			isolateAWSEnv(t)
			s, err := remote.Open(t.Context(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			s3s := s.(*Store)
			if s3s.bucket != tc.bucket || s3s.prefix != tc.prefix {
				t.Errorf("bucket %q, prefix %q; want %q, %q", s3s.bucket, s3s.prefix, tc.bucket, tc.prefix)
			}
			if tc.pathStyle != nil && s3s.client.Options().UsePathStyle != *tc.pathStyle {
				t.Errorf("path style %v, want %v", s3s.client.Options().UsePathStyle, *tc.pathStyle)
			}
		})
	}
}

// TestNew_PathStyle checks the addressing default: path style with a
// custom endpoint, from either endpoint variable, virtual-host style for AWS.
func TestNew_PathStyle(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		force     *bool
		want      bool
	}{
		{"AWS", "", nil, false},
		{"Endpoint", "AWS_ENDPOINT_URL", nil, true},
		{"ServiceEndpoint", "AWS_ENDPOINT_URL_S3", nil, true},
		{"EndpointForcedOff", "AWS_ENDPOINT_URL", ptr(false), false},
		{"AWSForcedOn", "", ptr(true), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWSEnv(t)
			if tc.env != "" {
				t.Setenv(tc.env, "http://127.0.0.1:9")
			}
			s, err := New(t.Context(), Options{Bucket: "bucket", PathStyle: tc.force})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.client.Options().UsePathStyle; got != tc.want {
				t.Errorf("UsePathStyle = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("DefaultRegion", func(t *testing.T) {
		isolateAWSEnv(t)
		t.Setenv("AWS_REGION", "")
		s, err := New(t.Context(), Options{Bucket: "bucket"})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.client.Options().Region; got != defaultRegion {
			t.Errorf("Region = %q, want %q", got, defaultRegion)
		}
	})
}

func TestOptions_Fill(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		says string
	}{
		{"NoBucket", Options{}, "no bucket"},
		{"NegativeTimeout", Options{Bucket: "b", Timeout: -1}, "negative timeout"},
		{"NegativeAttempts", Options{Bucket: "b", MaxAttempts: -1}, "negative max attempts"},
		{"PrefixTooLong", Options{Bucket: "b", Prefix: strings.Repeat("p", remote.MaxKeyLen)}, "no room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.opts.fill(); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("fill() = %v, want an error saying %q", err, tc.says)
			}
		})
	}
	t.Run("Defaults", func(t *testing.T) {
		opts := Options{Bucket: "b"}
		if err := opts.fill(); err != nil {
			t.Fatal(err)
		}
		if opts.Timeout != defaultTimeout || opts.MaxAttempts != defaultMaxAttempts {
			t.Errorf("filled options %+v, want timeout %v and %d attempts", opts, defaultTimeout, defaultMaxAttempts)
		}
	})
}

// isolateAWSEnv keeps the user's AWS configuration out of a test.
func isolateAWSEnv(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDTEST",
		"AWS_SECRET_ACCESS_KEY":       "secret",
		"AWS_REGION":                  "us-east-1",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

func ptr[T any](v T) *T { return &v }
