package s3_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cambiumdb/cambium/internal/testminio"
	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/remote/remotetest"
	"github.com/cambiumdb/cambium/remote/s3"
)

// TestStore_Conformance runs the conformance suite against a real MinIO
// server, each subtest in a bucket of its own.
func TestStore_Conformance(t *testing.T) {
	srv := testminio.Shared(t)
	srv.Env(t)
	t.Logf("S3 store conformance against MinIO at %s", srv.Endpoint)
	began := time.Now()
	remotetest.Run(t, func(t testing.TB) remote.Store {
		s, err := s3.New(context.Background(), s3.Options{Bucket: srv.NewBucket(t)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	t.Logf("conformance suite took %v", time.Since(began).Round(time.Millisecond))
}

func TestStore_Prefix(t *testing.T) {
	srv := testminio.Shared(t)
	srv.Env(t)
	bucket := srv.NewBucket(t)
	one := mustOpen(t, "s3://"+bucket+"/db/one")
	two := mustOpen(t, "s3://"+bucket+"/db/one-two/")
	ctx := t.Context()

	t.Run("Isolated", func(t *testing.T) {
		for _, key := range []string{"a", "b/c"} {
			if err := one.Put(ctx, key, []byte("one "+key)); err != nil {
				t.Fatal(err)
			}
			if err := two.Put(ctx, key, []byte("two "+key)); err != nil {
				t.Fatal(err)
			}
		}
		for name, s := range map[string]remote.Store{"one": one, "two": two} {
			objs, err := remote.ListAll(ctx, s, "")
			if err != nil || len(objs) != 2 || objs[0].Key != "a" || objs[1].Key != "b/c" {
				t.Errorf("%s: ListAll = %v, %v; want a, b/c", name, objs, err)
			}
			got, err := s.Get(ctx, "b/c")
			if want := name + " b/c"; err != nil || string(got) != want {
				t.Errorf("%s: Get(b/c) = %q, %v; want %q", name, got, err, want)
			}
		}
	})
	t.Run("ObjectNames", func(t *testing.T) {
		out, err := srv.Client().ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: &bucket})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range out.Contents {
			names = append(names, *o.Key)
		}
		want := []string{"db/one-two/a", "db/one-two/b/c", "db/one/a", "db/one/b/c"}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("objects in bucket = %q, want %q", names, want)
		}
	})
	t.Run("StartAfter", func(t *testing.T) {
		page, err := one.List(ctx, remote.ListOptions{StartAfter: "a"})
		if err != nil || len(page.Objects) != 1 || page.Objects[0].Key != "b/c" {
			t.Errorf("List(StartAfter a) = %v, %v; want b/c", page.Objects, err)
		}
	})
	t.Run("KeyTooLongWithPrefix", func(t *testing.T) {
		// "db/one/" takes 7 of S3's 1024 bytes. MinIO limits a part
		// to 255 bytes.
		key := strings.Repeat(strings.Repeat("k", 99)+"/", 10) + strings.Repeat("z", remote.MaxKeyLen-7-1000)
		if err := one.Put(ctx, key, nil); err != nil {
			t.Errorf("Put of a key that just fits: %v", err)
		}
		err := one.Put(ctx, key+"k", nil)
		if !errors.Is(err, remote.ErrInvalidKey) || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("Put of a key that does not fit = %v, want ErrInvalidKey naming the prefix", err)
		}
	})
}

func TestStore_Keys(t *testing.T) {
	srv := testminio.Shared(t)
	srv.Env(t)
	s := mustOpen(t, "s3://"+srv.NewBucket(t))
	t.Run("PartTooLongForMinIO", func(t *testing.T) {
		// MinIO, unlike AWS, limits a key part to 255 bytes; the
		// refusal must read as a bad key, not as a server failure.
		err := s.Put(t.Context(), "a/"+strings.Repeat("p", 256), []byte("x"))
		if !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("Put of a 256 byte part = %v, want ErrInvalidKey", err)
		}
	})
}

func mustOpen(t testing.TB, url string) remote.Store {
	t.Helper()
	s, err := remote.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeS3 is an HTTP server that answers S3 requests from a script, and
// records them.
type fakeS3 struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string // "METHOD /path" of each request
}

func newFakeS3(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *fakeS3 {
	f := &fakeS3{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.Path)
		n := len(f.requests)
		f.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(f.Close)
	setAWSEnv(t, f.URL)
	return f
}

func (f *fakeS3) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// setAWSEnv points the AWS configuration chain at endpoint with dummy
// credentials, away from the user's own configuration.
func setAWSEnv(t *testing.T, endpoint string) {
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDTEST",
		"AWS_SECRET_ACCESS_KEY":       "secret",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "us-east-1",
		"AWS_ENDPOINT_URL":            endpoint,
		"AWS_ENDPOINT_URL_S3":         "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>test</Message><RequestId>1</RequestId></Error>`, code)
}

func newStore(t *testing.T, opts s3.Options) *s3.Store {
	t.Helper()
	if opts.Bucket == "" {
		opts.Bucket = "bucket"
	}
	s, err := s3.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore_Errors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		answer   func(n int, w http.ResponseWriter, r *http.Request)
		call     func(s remote.Store) error
		want     error // errNone: success; nil: an error that is none of the sentinels
		requests int
	}{
		{
			name: "CreatePreconditionFailed",
			answer: func(_ int, w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("If-None-Match") != "*" {
					s3Error(w, http.StatusBadRequest, "MissingIfNoneMatch")
					return
				}
				s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			},
			call:     func(s remote.Store) error { return s.Create(ctx, "k", []byte("x")) },
			want:     remote.ErrExists,
			requests: 1,
		},
		{
			name: "CreateConflictThenPreconditionFailed",
			answer: func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					s3Error(w, http.StatusConflict, "ConditionalRequestConflict")
					return
				}
				s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			},
			call:     func(s remote.Store) error { return s.Create(ctx, "k", []byte("x")) },
			want:     remote.ErrExists,
			requests: 2,
		},
		{
			name: "GetNoSuchKey",
			answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
				s3Error(w, http.StatusNotFound, "NoSuchKey")
			},
			call:     func(s remote.Store) error { _, err := s.Get(ctx, "k"); return err },
			want:     remote.ErrNotFound,
			requests: 1,
		},
		{
			name: "GetRangeNoSuchKey",
			answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
				s3Error(w, http.StatusNotFound, "NoSuchKey")
			},
			call:     func(s remote.Store) error { _, err := s.GetRange(ctx, "k", 0, 1); return err },
			want:     remote.ErrNotFound,
			requests: 1,
		},
		{
			name: "SizeNotFound",
			answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusNotFound) // HEAD responses have no body
			},
			call:     func(s remote.Store) error { _, err := s.Size(ctx, "k"); return err },
			want:     remote.ErrNotFound,
			requests: 1,
		},
		{
			name: "DeleteNoSuchKey",
			answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
				s3Error(w, http.StatusNotFound, "NoSuchKey")
			},
			call:     func(s remote.Store) error { return s.Delete(ctx, "k") },
			want:     errNone,
			requests: 1,
		},
		{
			name: "NoSuchBucketIsNotNotFound",
			answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
				s3Error(w, http.StatusNotFound, "NoSuchBucket")
			},
			call:     func(s remote.Store) error { _, err := s.Get(ctx, "k"); return err },
			requests: 1,
		},
		{
			name: "AccessDeniedNotRetried",
			answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
				s3Error(w, http.StatusForbidden, "AccessDenied")
			},
			call:     func(s remote.Store) error { return s.Put(ctx, "k", []byte("x")) },
			requests: 1,
		},
		{
			name: "ServerErrorRetried",
			answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
				s3Error(w, http.StatusInternalServerError, "InternalError")
			},
			call:     func(s remote.Store) error { return s.Put(ctx, "k", []byte("x")) },
			requests: 3,
		},
		{
			name: "SlowDownThenOK",
			answer: func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					s3Error(w, http.StatusServiceUnavailable, "SlowDown")
				}
			},
			call:     func(s remote.Store) error { return s.Put(ctx, "k", []byte("x")) },
			want:     errNone,
			requests: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeS3(t, tc.answer)
			s := newStore(t, s3.Options{MaxAttempts: 3})
			err := tc.call(s)
			switch {
			case tc.want == errNone:
				if err != nil {
					t.Errorf("err = %v, want success", err)
				}
			case tc.want != nil:
				if !errors.Is(err, tc.want) {
					t.Errorf("err = %v, want %v", err, tc.want)
				}
			default:
				if err == nil || errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrExists) {
					t.Errorf("err = %v, want a plain error", err)
				}
			}
			if got := f.count(); got != tc.requests {
				t.Errorf("%d requests %q, want %d", got, f.requests, tc.requests)
			}
		})
	}
}

func TestStore_Retry(t *testing.T) {
	t.Run("Backoff", func(t *testing.T) {
		// Three attempts wait twice: 100-200ms, then 200-400ms.
		f := newFakeS3(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			s3Error(w, http.StatusServiceUnavailable, "ServiceUnavailable")
		})
		s := newStore(t, s3.Options{MaxAttempts: 3})
		began := time.Now()
		if _, err := s.Get(t.Context(), "k"); err == nil || !strings.Contains(err.Error(), "503") {
			t.Errorf("Get = %v, want the 503 error", err)
		}
		if d := time.Since(began); d < 300*time.Millisecond || d > 2*time.Second {
			t.Errorf("three attempts took %v, want 300ms to 2s of backoff", d)
		}
		if n := f.count(); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
	})
	t.Run("CanceledDuringBackoff", func(t *testing.T) {
		newFakeS3(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			s3Error(w, http.StatusInternalServerError, "InternalError")
		})
		s := newStore(t, s3.Options{MaxAttempts: 10})
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		began := time.Now()
		if _, err := s.Get(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(began); d > 2*time.Second {
			t.Errorf("Get took %v with a 250ms deadline", d)
		}
	})
}

// errNone marks a case that must succeed.
var errNone = errors.New("no error")

func TestStore_Requests(t *testing.T) {
	t.Run("PathStyleAndNoChecksums", func(t *testing.T) {
		var header http.Header
		f := newFakeS3(t, func(_ int, _ http.ResponseWriter, r *http.Request) { header = r.Header.Clone() })
		s := newStore(t, s3.Options{Bucket: "my-bucket", Prefix: "pre/"})
		if err := s.Put(t.Context(), "dir/key", []byte("data")); err != nil {
			t.Fatal(err)
		}
		if f.requests[0] != "PUT /my-bucket/pre/dir/key" {
			t.Errorf("request %q, want a path-style PUT /my-bucket/pre/dir/key", f.requests[0])
		}
		for name := range header {
			if strings.HasPrefix(strings.ToLower(name), "x-amz-checksum-") || strings.EqualFold(name, "X-Amz-Sdk-Checksum-Algorithm") {
				t.Errorf("PutObject sent checksum header %s, which S3-compatible servers may refuse", name)
			}
		}
	})
	t.Run("Range", func(t *testing.T) {
		var ranges []string
		newFakeS3(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			ranges = append(ranges, r.Header.Get("Range"))
			w.Header().Set("Content-Range", "bytes 10-14/100")
			w.WriteHeader(http.StatusPartialContent)
			w.Write([]byte("01234"))
		})
		s := newStore(t, s3.Options{})
		got, err := s.GetRange(t.Context(), "k", 10, 5)
		if err != nil || string(got) != "01234" {
			t.Errorf("GetRange = %q, %v", got, err)
		}
		if len(ranges) != 1 || ranges[0] != "bytes=10-14" {
			t.Errorf("Range headers %q, want bytes=10-14", ranges)
		}
	})
	t.Run("RangeIgnored", func(t *testing.T) {
		// A server that ignores Range sends the whole object.
		newFakeS3(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("0123456789"))
		})
		s := newStore(t, s3.Options{})
		got, err := s.GetRange(t.Context(), "k", 8, 5)
		if err != nil || string(got) != "89" {
			t.Errorf("GetRange(8, 5) = %q, %v; want 89", got, err)
		}
	})
	t.Run("RangeNotSatisfiable", func(t *testing.T) {
		for _, tc := range []struct {
			offset int64
			want   error
		}{{10, nil}, {11, remote.ErrInvalidRange}} {
			f := newFakeS3(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodHead {
					w.Header().Set("Content-Length", "10")
					return
				}
				s3Error(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
			})
			s := newStore(t, s3.Options{})
			got, err := s.GetRange(t.Context(), "k", tc.offset, 5)
			if !errors.Is(err, tc.want) || (tc.want == nil && (err != nil || len(got) != 0)) {
				t.Errorf("GetRange(%d, 5) of 10 bytes = %q, %v; want empty, %v", tc.offset, got, err, tc.want)
			}
			if want := "GET /bucket/k HEAD /bucket/k"; strings.Join(f.requests, " ") != want {
				t.Errorf("requests %q, want %s", f.requests, want)
			}
		}
	})
}

func TestStore_DeadEndpoint(t *testing.T) {
	t.Run("ConnectionRefused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		setAWSEnv(t, "http://"+addr)
		s := newStore(t, s3.Options{MaxAttempts: 3})
		began := time.Now()
		_, err = s.Get(t.Context(), "k")
		if err == nil || errors.Is(err, remote.ErrNotFound) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("Get = %v, want a connection refused error", err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("Get took %v against a closed port", d)
		}
	})
	t.Run("NoAnswer", func(t *testing.T) {
		// A server that accepts connections and never answers: each
		// attempt ends at the timeout.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		var accepted atomic.Int32
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				t.Cleanup(func() { c.Close() })
			}
		}()
		setAWSEnv(t, "http://"+l.Addr().String())
		s := newStore(t, s3.Options{MaxAttempts: 2, Timeout: 300 * time.Millisecond})
		began := time.Now()
		done := make(chan error, 1)
		go func() {
			_, err := s.Get(context.Background(), "k")
			done <- err
		}()
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Get hangs against a server that does not answer")
		}
		d := time.Since(began)
		if err == nil || errors.Is(err, remote.ErrNotFound) {
			t.Errorf("Get = %v, want a timeout error", err)
		}
		if d < 600*time.Millisecond || d > 5*time.Second {
			t.Errorf("Get took %v; want two attempts of 300ms", d)
		}
		if n := accepted.Load(); n != 2 {
			t.Errorf("%d connections, want 2 attempts", n)
		}
	})
	t.Run("CallerDeadline", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		setAWSEnv(t, "http://"+l.Addr().String())
		s := newStore(t, s3.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		began := time.Now()
		_, err = s.Get(ctx, "k")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(began); d > 3*time.Second {
			t.Errorf("Get took %v with a 300ms deadline", d)
		}
	})
}
