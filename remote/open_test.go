package remote

import (
	"errors"
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
	t.Run("S3", func(t *testing.T) {
		isolateAWSEnv(t)
		s, err := Open(t.Context(), "s3://my-bucket/db/one/?path_style=false")
		if err != nil {
			t.Fatal(err)
		}
		s3s, ok := s.(*S3Store)
		if !ok || s3s.bucket != "my-bucket" || s3s.prefix != "db/one/" || s3s.client.Options().UsePathStyle {
			t.Errorf("Open(s3://) = %T %+v, want bucket my-bucket, prefix db/one/, virtual-host style", s, s3s)
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
		{"S3NoBucket", "s3://", "missing bucket name"},
		{"S3NoBucketWithPath", "s3:///prefix", "missing bucket name"},
		{"S3BucketUpper", "s3://MyBucket", `bucket "MyBucket": character 'M'`},
		{"S3BucketShort", "s3://ab", `bucket "ab": length 2`},
		{"S3BucketLong", "s3://" + strings.Repeat("b", 64), "length 64"},
		{"S3BucketUnderscore", "s3://my_bucket", `character '_'`},
		{"S3BucketEdge", "s3://-bucket", "begin and end"},
		{"S3BucketDots", "s3://my..bucket", `".."`},
		{"S3BucketIP", "s3://192.168.1.1", "IP address"},
		{"S3BucketPort", "s3://bucket:9000", `character ':'`},
		{"S3Credentials", "s3://key:secret@bucket", `user info "key"`},
		{"S3PrefixEmptyPart", "s3://bucket/a//b", `prefix "a//b"`},
		{"S3PrefixDotDot", "s3://bucket/a/../b", `prefix "a/../b"`},
		{"S3PrefixControl", "s3://bucket/a%01b", `prefix "a\x01b"`},
		{"S3UnknownParam", "s3://bucket?region=eu-west-1", `unknown query parameter "region"`},
		{"S3PathStyleValue", "s3://bucket?path_style=yes", `path_style="yes"`},
		{"S3PathStyleTwice", "s3://bucket?path_style=true&path_style=false", "given 2 times"},
		{"S3BadQuery", "s3://bucket?path_style=%zz", "query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWSEnv(t)
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

func TestParseS3URL(t *testing.T) {
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
			s, err := Open(t.Context(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			s3s := s.(*S3Store)
			if s3s.bucket != tc.bucket || s3s.prefix != tc.prefix {
				t.Errorf("bucket %q, prefix %q; want %q, %q", s3s.bucket, s3s.prefix, tc.bucket, tc.prefix)
			}
			if tc.pathStyle != nil && s3s.client.Options().UsePathStyle != *tc.pathStyle {
				t.Errorf("path style %v, want %v", s3s.client.Options().UsePathStyle, *tc.pathStyle)
			}
		})
	}
}

// TestNewS3Store_PathStyle checks the addressing default: path style with a
// custom endpoint, from either endpoint variable, virtual-host style for AWS.
func TestNewS3Store_PathStyle(t *testing.T) {
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
			s, err := NewS3Store(t.Context(), S3Options{Bucket: "bucket", PathStyle: tc.force})
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
		s, err := NewS3Store(t.Context(), S3Options{Bucket: "bucket"})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.client.Options().Region; got != defaultS3Region {
			t.Errorf("Region = %q, want %q", got, defaultS3Region)
		}
	})
}

func TestS3Options_Fill(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts S3Options
		says string
	}{
		{"NoBucket", S3Options{}, "no bucket"},
		{"NegativeTimeout", S3Options{Bucket: "b", Timeout: -1}, "negative timeout"},
		{"NegativeAttempts", S3Options{Bucket: "b", MaxAttempts: -1}, "negative max attempts"},
		{"PrefixTooLong", S3Options{Bucket: "b", Prefix: strings.Repeat("p", MaxKeyLen)}, "no room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.opts.fill(); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("fill() = %v, want an error saying %q", err, tc.says)
			}
		})
	}
	t.Run("Defaults", func(t *testing.T) {
		opts := S3Options{Bucket: "b"}
		if err := opts.fill(); err != nil {
			t.Fatal(err)
		}
		if opts.Timeout != defaultS3Timeout || opts.MaxAttempts != defaultS3MaxAttempts {
			t.Errorf("filled options %+v, want timeout %v and %d attempts", opts, defaultS3Timeout, defaultS3MaxAttempts)
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
