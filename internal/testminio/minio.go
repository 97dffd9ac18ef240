// Package testminio runs a MinIO server for tests that need a real
// S3-compatible store. A test that asks for a server and cannot get one
// fails; it never skips, so a green run means the S3 code really ran.
//
// Start gives a test its own server. Packages with many such tests share
// one through Shared, stopped by Main from TestMain:
//
//	func TestMain(m *testing.M) { testminio.Main(m) }
//
//	func TestS3(t *testing.T) {
//		srv := testminio.Shared(t)
//		srv.Env(t) // remote.Open("s3://" + srv.NewBucket(t)) now reaches it
//	}
//
// The minio binary is found through $CAMBIUM_MINIO, then $PATH, then
// $GOBIN and $(go env GOPATH)/bin; if it is in none of them it is built with
// go install, which takes minutes the first time.
package testminio

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinIOModule is what go install builds when no minio binary is found.
const MinIOModule = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"

const (
	// readyTimeout bounds the wait for a started server to answer.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds the wait for a server to exit after SIGTERM
	// before it is killed.
	stopTimeout = 10 * time.Second
	// region is what the server is told to expect; MinIO accepts any.
	region = "us-east-1"
)

// Server is a running MinIO server.
type Server struct {
	Endpoint  string // base URL, such as http://127.0.0.1:40123
	AccessKey string
	SecretKey string
	Bucket    string // a bucket created at start

	dir     string // data, certificates; removed at stop
	cmd     *exec.Cmd
	output  *syncBuffer
	exited  chan struct{} // closed when the process has exited
	client  *s3.Client
	buckets atomic.Int64
}

// Start starts a server for the test alone, stopped when the test ends. It
// fails the test if MinIO cannot be installed or started.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start(t.Logf)
	if err != nil {
		t.Fatalf("testminio: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

var shared struct {
	sync.Mutex
	inMain bool
	server *Server
	err    error // why the shared server could not start, for every later caller
}

// Main runs the package's tests, as TestMain does, then stops the server
// Shared started, if any, and exits.
func Main(m *testing.M) {
	shared.Lock()
	shared.inMain = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	if shared.server != nil {
		shared.server.stop()
		shared.server = nil
	}
	shared.Unlock()
	os.Exit(code)
}

// Shared returns the package's shared server, starting it on first use. The
// package's TestMain must call Main, which stops the server after the last
// test. Tests that share the server should use their own bucket
// (NewBucket) or key prefix.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.inMain {
		t.Fatalf("testminio: Shared needs the package's TestMain to call testminio.Main, which stops the server")
	}
	if shared.server == nil && shared.err == nil {
		shared.server, shared.err = start(t.Logf)
	}
	if shared.err != nil {
		t.Fatalf("testminio: %v", shared.err)
	}
	return shared.server
}

// Env points the AWS configuration chain at the server for the rest of the
// test, so that remote.Open("s3://bucket/prefix") reaches it. It isolates
// the test from the user's AWS profiles, and like t.Setenv it cannot be
// used in parallel tests.
func (s *Server) Env(t testing.TB) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "no-aws-config")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           s.AccessKey,
		"AWS_SECRET_ACCESS_KEY":       s.SecretKey,
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  region,
		"AWS_ENDPOINT_URL":            s.Endpoint,
		"AWS_ENDPOINT_URL_S3":         s.Endpoint,
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

// NewBucket creates an empty bucket and returns its name. The bucket lives
// until the server stops.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", s.buckets.Add(1), randomHex(6))
	if err := s.createBucket(t.Context(), name); err != nil {
		t.Fatalf("testminio: %v", err)
	}
	return name
}

func (s *Server) createBucket(ctx context.Context, name string) error {
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// start finds or installs minio and starts a server in a new temporary
// directory.
func start(logf func(string, ...any)) (*Server, error) {
	bin, err := findOrInstall(logf)
	if err != nil {
		return nil, err
	}
	var s *Server
	// Another process may take a free port between our probe and
	// minio's bind; that is worth a retry, nothing else is.
	for range 3 {
		s, err = launch(bin, logf)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	s.Bucket = "cambium-test"
	if err := s.createBucket(context.Background(), s.Bucket); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func launch(bin string, logf func(string, ...any)) (*Server, error) {
	dir, err := os.MkdirTemp("", "cambium-minio-")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	consoleAddr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		Endpoint:  "http://" + addr,
		AccessKey: "cambium-" + randomHex(6),
		SecretKey: randomHex(20),
		dir:       dir,
		output:    &syncBuffer{},
		exited:    make(chan struct{}),
	}
	s.cmd = exec.Command(bin, "server", filepath.Join(dir, "data"),
		"--address", addr,
		"--console-address", consoleAddr,
		"--certs-dir", filepath.Join(dir, "certs"),
		"--quiet")
	s.cmd.Env = append(environWithout("MINIO_"),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
	)
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	setDeathSignal(s.cmd)

	began := time.Now()
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		s.stop()
		return nil, fmt.Errorf("minio server at %s: %w\nminio output:\n%s", addr, err, s.output.String())
	}
	logf("testminio: minio server at %s ready in %v", s.Endpoint, time.Since(began).Round(time.Millisecond))

	s.client = s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: &s.Endpoint,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	return s, nil
}

// waitReady polls the server's liveness endpoint until it answers, the
// process exits or readyTimeout passes.
func (s *Server) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get(s.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health check: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", readyTimeout, err)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("exited during start: %v", s.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the server and removes its files.
func (s *Server) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(terminateSignal)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	os.RemoveAll(s.dir)
}

// findOrInstall returns the path of a minio binary, building one with go
// install if none is found.
func findOrInstall(logf func(string, ...any)) (string, error) {
	if p := os.Getenv("CAMBIUM_MINIO"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CAMBIUM_MINIO: %w", err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	dirs, err := goBinDirs()
	if err != nil {
		return "", err
	}
	find := func() string {
		for _, dir := range dirs {
			if p := filepath.Join(dir, "minio"); isExecutable(p) {
				return p
			}
		}
		return ""
	}
	if p := find(); p != "" {
		return p, nil
	}

	// Test binaries of several packages may get here at once; one
	// installs while the others wait, then find its binary.
	unlock, err := lockFile(filepath.Join(os.TempDir(), "cambium-minio-install.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if p := find(); p != "" {
		return p, nil
	}
	logf("testminio: minio not found in $CAMBIUM_MINIO, $PATH or %s; running go install %s (this takes minutes)", strings.Join(dirs, ", "), MinIOModule)
	began := time.Now()
	out, err := exec.Command("go", "install", MinIOModule).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", MinIOModule, err, out)
	}
	p := find()
	if p == "" {
		return "", fmt.Errorf("go install %s succeeded but no minio binary is in %s", MinIOModule, strings.Join(dirs, ", "))
	}
	logf("testminio: installed %s in %v", p, time.Since(began).Round(time.Second))
	return p, nil
}

// goBinDirs returns where go install puts binaries: $GOBIN if set, and the
// bin directory of the first GOPATH entry.
func goBinDirs() ([]string, error) {
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	// One line each, the first empty when GOBIN is unset: trim only the
	// final newline.
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 2 {
		return nil, fmt.Errorf("go env GOBIN GOPATH printed %q", out)
	}
	var dirs []string
	if gobin := strings.TrimSpace(lines[0]); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if gopath, _, _ := strings.Cut(strings.TrimSpace(lines[1]), string(filepath.ListSeparator)); gopath != "" {
		dirs = append(dirs, filepath.Join(gopath, "bin"))
	}
	if len(dirs) == 0 {
		return nil, errors.New("go env names neither GOBIN nor GOPATH")
	}
	return dirs, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// environWithout returns the environment minus variables beginning with
// prefix, so that the caller's settings cannot change the server.
func environWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer collects a process's output, which its copying goroutines
// write while the test may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Client returns an S3 client with the server's root credentials, for tests
// that need to inspect or arrange objects behind a store's back.
func (s *Server) Client() *s3.Client {
	return s.client
}
