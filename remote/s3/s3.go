package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cambiumdb/cambium/remote"
)

// Store is a remote.Store in an S3 bucket, or in a server that speaks the
// S3 API (MinIO, Ceph, R2, ...). Credentials, region and endpoint come from
// the standard AWS configuration chain: environment variables such as
// AWS_ACCESS_KEY_ID, AWS_REGION and AWS_ENDPOINT_URL_S3, shared config
// files and profiles, and instance roles.
//
// Create relies on conditional writes (PutObject with If-None-Match: *),
// which AWS S3 and current MinIO support. Each request is retried with
// exponential backoff on network errors, 5xx responses, throttling and
// conditional write conflicts, never on other 4xx responses.
//
// The store's key prefix counts against S3's limit of remote.MaxKeyLen
// bytes per object name, so with a prefix the longest usable key is shorter
// than remote.MaxKeyLen; longer keys fail with remote.ErrInvalidKey.
type Store struct {
	client    *awss3.Client
	bucket    string
	prefix    string
	transport *http.Transport // for closing idle connections
}

var _ remote.Store = (*Store)(nil)

// Options configures a Store. Bucket is required; the zero value of
// every other field means its default.
type Options struct {
	// Bucket names the bucket that holds the objects.
	Bucket string

	// Prefix is prepended verbatim to every key, so that several stores
	// can share a bucket. remote.Open makes it end in "/".
	Prefix string

	// PathStyle forces path-style addressing (http://host/bucket/key) on
	// or off. By default it is on when the configuration names a custom
	// endpoint, as S3-compatible servers usually need, and off for AWS.
	PathStyle *bool

	// Timeout bounds each request attempt, including reading the
	// response body, when the caller's context has no deadline of its
	// own. Default 60s.
	Timeout time.Duration

	// MaxAttempts is how many times a request is tried before its error
	// is returned. Default 5.
	MaxAttempts int
}

const (
	defaultTimeout     = 60 * time.Second
	defaultMaxAttempts = 5

	// defaultRegion is used when the configuration chain names no
	// region. Most S3-compatible servers accept any region.
	defaultRegion = "us-east-1"

	// baseBackoff and maxBackoff bound the delay before a retry:
	// attempt n waits between half and all of baseBackoff*2^n, capped.
	baseBackoff = 100 * time.Millisecond
	maxBackoff  = 5 * time.Second
)

// fill applies defaults and checks the options.
func (o *Options) fill() error {
	if o.Bucket == "" {
		return errors.New("s3 store: no bucket")
	}
	if len(o.Prefix) >= remote.MaxKeyLen {
		return fmt.Errorf("s3 store: prefix is %d bytes, leaving no room for keys", len(o.Prefix))
	}
	switch {
	case o.Timeout < 0:
		return fmt.Errorf("s3 store: negative timeout %v", o.Timeout)
	case o.Timeout == 0:
		o.Timeout = defaultTimeout
	}
	switch {
	case o.MaxAttempts < 0:
		return fmt.Errorf("s3 store: negative max attempts %d", o.MaxAttempts)
	case o.MaxAttempts == 0:
		o.MaxAttempts = defaultMaxAttempts
	}
	return nil
}

// New returns a store in the bucket opts.Bucket, configured from the
// standard AWS configuration chain. It does not contact the server.
func New(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithDefaultRegion(defaultRegion),
		// Checksums beyond what the API requires break many
		// S3-compatible servers.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	)
	if err != nil {
		return nil, fmt.Errorf("s3 store: load aws config: %w", err)
	}

	transport := awshttp.NewBuildableClient().GetTransport()
	httpClient := &http.Client{
		Transport: &attemptTimeoutTransport{next: transport, timeout: opts.Timeout},
		// The SDK handles redirects (such as S3's wrong-region 301)
		// itself and needs to see them.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	client := awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		// BaseEndpoint is resolved from the configuration by now.
		o.UsePathStyle = aws.ToString(o.BaseEndpoint) != ""
		if opts.PathStyle != nil {
			o.UsePathStyle = *opts.PathStyle
		}
		o.HTTPClient = httpClient
		o.Retryer = newRetryer(opts.MaxAttempts)
		o.RetryMaxAttempts = 0 // so that AWS_MAX_ATTEMPTS does not wrap our retryer
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Store{client: client, bucket: opts.Bucket, prefix: opts.Prefix, transport: transport}, nil
}

// newRetryer returns the retry policy: the SDK's standard retryer, which
// does not retry 4xx responses other than throttling and request timeouts,
// plus retries of conditional write conflicts (409
// ConditionalRequestConflict), which S3 returns when concurrent conditional
// writes race and which settle into a 412 or a success on retry. The
// client-side retry quota is off: a storage engine bounds its retries per
// call, and a quota shared by all calls would turn one bad minute into
// immediate failures afterwards.
func newRetryer(maxAttempts int) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = maxBackoff
		o.Backoff = retry.BackoffDelayerFunc(backoff)
		o.RateLimiter = ratelimit.None
		o.Retryables = append([]retry.IsErrorRetryable{
			retry.RetryableErrorCode{Codes: map[string]struct{}{"ConditionalRequestConflict": {}}},
		}, o.Retryables...)
	})
}

// backoff returns the delay before retry number attempt: exponential with
// jitter, so that clients that failed together do not retry together.
func backoff(attempt int, _ error) (time.Duration, error) {
	d := maxBackoff
	if attempt < 16 {
		d = min(baseBackoff<<max(attempt, 0), maxBackoff)
	}
	return d/2 + rand.N(d/2+1), nil
}

// attemptTimeoutTransport gives every request whose context has no deadline
// one of timeout, so that a server that stops answering cannot hang a call.
// The SDK retries an attempt cut short this way like any network error.
type attemptTimeoutTransport struct {
	next    http.RoundTripper
	timeout time.Duration
}

func (t *attemptTimeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, ok := req.Context().Deadline(); ok {
		return t.next.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	// The deadline covers reading the body too; it is released when the
	// body is closed.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Get implements remote.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	k, err := s.objectKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", key, classify(err))
	}
	data, err := readBody(out.Body, out.ContentLength)
	if err != nil {
		return nil, fmt.Errorf("s3 get %s: read body: %w", key, err)
	}
	return data, nil
}

// GetRange implements remote.Store. It costs one request, and a second one (a
// HEAD) only when the range starts at or past the end of the object.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	k, err := s.objectKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("s3 get range: %w", err)
	}
	if err := remote.ValidateRange(offset, length); err != nil {
		return nil, fmt.Errorf("s3 get range %s: %w", key, err)
	}
	if length == 0 {
		// A zero-length Range header is not expressible; the contract
		// still wants the object and the offset checked.
		if _, err := s.checkOffset(ctx, k, offset); err != nil {
			return nil, fmt.Errorf("s3 get range %s: %w", key, err)
		}
		return []byte{}, nil
	}
	rangeHeader := fmt.Sprintf("bytes=%d-", offset)
	if length <= math.MaxInt64-offset {
		rangeHeader += fmt.Sprint(offset + length - 1)
	}
	out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: &s.bucket, Key: &k, Range: &rangeHeader})
	if code, status := errorCode(err); code == "InvalidRange" || status == http.StatusRequestedRangeNotSatisfiable {
		// The range starts at or past the end: at the end is an empty
		// slice, past it ErrInvalidRange.
		size, err := s.checkOffset(ctx, k, offset)
		if err != nil {
			return nil, fmt.Errorf("s3 get range %s: %w", key, err)
		}
		if offset < size {
			return nil, fmt.Errorf("s3 get range %s: object changed while being read", key)
		}
		return []byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("s3 get range %s: %w", key, classify(err))
	}
	data, err := readBody(out.Body, out.ContentLength)
	if err != nil {
		return nil, fmt.Errorf("s3 get range %s: read body: %w", key, err)
	}
	if out.ContentRange == nil {
		// The server ignored the Range header and sent the whole object.
		start, end, err := remote.ClampRange(int64(len(data)), offset, length)
		if err != nil {
			return nil, fmt.Errorf("s3 get range %s: %w", key, err)
		}
		return data[start:end:end], nil
	}
	if int64(len(data)) > length {
		return nil, fmt.Errorf("s3 get range %s: asked for %d bytes, server sent %d", key, length, len(data))
	}
	return data, nil
}

// checkOffset returns the size of the object named k, or ErrInvalidRange if
// offset lies past its end.
func (s *Store) checkOffset(ctx context.Context, k string, offset int64) (int64, error) {
	size, err := s.size(ctx, k)
	if err != nil {
		return 0, err
	}
	if _, _, err := remote.ClampRange(size, offset, 0); err != nil {
		return 0, err
	}
	return size, nil
}

// Size implements remote.Store.
func (s *Store) Size(ctx context.Context, key string) (int64, error) {
	k, err := s.objectKey(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("s3 size: %w", err)
	}
	size, err := s.size(ctx, k)
	if err != nil {
		return 0, fmt.Errorf("s3 size %s: %w", key, err)
	}
	return size, nil
}

func (s *Store) size(ctx context.Context, k string) (int64, error) {
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return 0, classify(err)
	}
	if out.ContentLength == nil {
		return 0, errors.New("server sent no content length")
	}
	return *out.ContentLength, nil
}

// Put implements remote.Store.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	k, err := s.objectKey(ctx, key)
	if err != nil {
		return fmt.Errorf("s3 put: %w", err)
	}
	if _, err := s.client.PutObject(ctx, s.putInput(k, data)); err != nil {
		return fmt.Errorf("s3 put %s: %w", key, classify(err))
	}
	return nil
}

// Create implements remote.Store.
func (s *Store) Create(ctx context.Context, key string, data []byte) error {
	k, err := s.objectKey(ctx, key)
	if err != nil {
		return fmt.Errorf("s3 create: %w", err)
	}
	in := s.putInput(k, data)
	in.IfNoneMatch = aws.String("*")
	if _, err := s.client.PutObject(ctx, in); err != nil {
		if code, status := errorCode(err); code == "PreconditionFailed" || status == http.StatusPreconditionFailed {
			return fmt.Errorf("s3 create %s: %w", key, remote.ErrExists)
		}
		return fmt.Errorf("s3 create %s: %w", key, classify(err))
	}
	return nil
}

func (s *Store) putInput(k string, data []byte) *awss3.PutObjectInput {
	return &awss3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &k,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	}
}

// List implements remote.Store.
func (s *Store) List(ctx context.Context, opts remote.ListOptions) (remote.ListPage, error) {
	if err := ctx.Err(); err != nil {
		return remote.ListPage{}, fmt.Errorf("s3 list: %w", err)
	}
	limit, err := remote.ListLimit(opts)
	if err != nil {
		return remote.ListPage{}, fmt.Errorf("s3 list: %w", err)
	}
	// One object more than the limit says for sure whether more follow:
	// MinIO answers IsTruncated false to max-keys=1 when the prefix is
	// itself a key, though more keys follow.
	in := &awss3.ListObjectsV2Input{Bucket: &s.bucket, MaxKeys: aws.Int32(int32(min(limit+1, remote.MaxListLimit)))}
	if p := s.prefix + opts.Prefix; p != "" {
		in.Prefix = &p
	}
	if opts.StartAfter != "" {
		in.StartAfter = aws.String(s.prefix + opts.StartAfter)
	}
	out, err := s.client.ListObjectsV2(ctx, in)
	if err != nil {
		return remote.ListPage{}, fmt.Errorf("s3 list %q: %w", opts.Prefix, err)
	}
	page := remote.ListPage{Truncated: aws.ToBool(out.IsTruncated)}
	contents := out.Contents
	if len(contents) > limit {
		contents, page.Truncated = contents[:limit], true
	}
	page.Objects = make([]remote.ObjectInfo, 0, len(contents))
	for _, o := range contents {
		page.Objects = append(page.Objects, remote.ObjectInfo{
			Key:      strings.TrimPrefix(aws.ToString(o.Key), s.prefix),
			Size:     aws.ToInt64(o.Size),
			Modified: aws.ToTime(o.LastModified),
		})
	}
	return page, nil
}

// Delete implements remote.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey(ctx, key)
	if err != nil {
		return fmt.Errorf("s3 delete: %w", err)
	}
	if _, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil {
		err = classify(err)
		if errors.Is(err, remote.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("s3 delete %s: %w", key, err)
	}
	return nil
}

// Close implements remote.Store.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// objectKey checks a call and returns the S3 object name for key.
func (s *Store) objectKey(ctx context.Context, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := remote.ValidateKey(key); err != nil {
		return "", err
	}
	if len(s.prefix)+len(key) > remote.MaxKeyLen {
		return "", fmt.Errorf("%w: with the store prefix %q, %q is %d bytes, longer than S3's %d",
			remote.ErrInvalidKey, s.prefix, key, len(s.prefix)+len(key), remote.MaxKeyLen)
	}
	return s.prefix + key, nil
}

// readBody reads and closes an object body of length bytes, if known.
func readBody(body io.ReadCloser, length *int64) ([]byte, error) {
	defer body.Close()
	if length == nil || *length < 0 {
		return io.ReadAll(body)
	}
	data := make([]byte, *length)
	if _, err := io.ReadFull(body, data); err != nil {
		return nil, err
	}
	return data, nil
}

// errorCode returns the S3 error code and HTTP status of a failed request,
// where the server sent them.
func errorCode(err error) (code string, status int) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	return code, status
}

// classify maps a failed request to remote's sentinels: ErrNotFound if the
// object does not exist, ErrInvalidKey if the server refuses the key (AWS
// limits its length; MinIO also limits each part to 255 bytes), and err
// itself otherwise.
//
// A missing bucket is not a missing object: GET reports it as NoSuchBucket,
// which stays an error. HEAD has no body to say which is missing, so Size in
// a missing bucket reports ErrNotFound.
func classify(err error) error {
	code, status := errorCode(err)
	switch {
	case code == "NoSuchKey", status == http.StatusNotFound && code == "NotFound":
		return remote.ErrNotFound
	case code == "KeyTooLongError", code == "XMinioInvalidObjectName":
		return fmt.Errorf("%w: refused by the server: %w", remote.ErrInvalidKey, err)
	}
	return err
}
