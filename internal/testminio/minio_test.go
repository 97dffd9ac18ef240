package testminio

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestMain(m *testing.M) {
	Main(m)
}

func TestStart(t *testing.T) {
	var srv *Server
	t.Run("Serves", func(t *testing.T) {
		srv = Start(t)
		bucket := srv.NewBucket(t)
		if _, err := srv.Client().HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: &bucket}); err != nil {
			t.Errorf("new bucket %s: %v", bucket, err)
		}
		if _, err := srv.Client().HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: &srv.Bucket}); err != nil {
			t.Errorf("start bucket %s: %v", srv.Bucket, err)
		}
	})
	t.Run("StoppedAfterTest", func(t *testing.T) {
		if srv == nil {
			t.Fatal("no server started")
		}
		if resp, err := http.Get(srv.Endpoint + "/minio/health/live"); err == nil {
			resp.Body.Close()
			t.Errorf("server at %s still answers after its test ended", srv.Endpoint)
		}
		if _, err := os.Stat(srv.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("data directory %s still there: %v", srv.dir, err)
		}
	})
}

func TestShared(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatalf("Shared returned two servers, %s and %s", a.Endpoint, b.Endpoint)
	}
	if a.NewBucket(t) == a.NewBucket(t) {
		t.Error("NewBucket returned one name twice")
	}
}

func TestServer_Env(t *testing.T) {
	srv := Shared(t)
	srv.Env(t)
	for k, want := range map[string]string{
		"AWS_ACCESS_KEY_ID":     srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY": srv.SecretKey,
		"AWS_ENDPOINT_URL":      srv.Endpoint,
		"AWS_REGION":            region,
	} {
		if got := os.Getenv(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestFindOrInstall(t *testing.T) {
	t.Run("EnvMissingBinary", func(t *testing.T) {
		t.Setenv("CAMBIUM_MINIO", "/nonexistent/minio")
		_, err := findOrInstall(t.Logf)
		if err == nil || !strings.Contains(err.Error(), "CAMBIUM_MINIO") {
			t.Errorf("findOrInstall = %v, want an error naming CAMBIUM_MINIO", err)
		}
	})
	t.Run("Found", func(t *testing.T) {
		p, err := findOrInstall(t.Logf)
		if err != nil || !isExecutable(p) {
			t.Errorf("findOrInstall = %q, %v", p, err)
		}
	})
}
