package remote

import (
	"context"
	"fmt"
	"time"
)

// LatencyOptions describe the object store a LatencyStore emulates.
type LatencyOptions struct {
	// FirstByte is the delay before any request is answered: the round
	// trip and the store's own service time (object stores: 10-50 ms).
	FirstByte time.Duration
	// BytesPerSecond is the bandwidth of one request's stream; payloads
	// (read or written) take len/BytesPerSecond after the first byte.
	// Concurrent requests each get the full rate, as separate connections
	// to an object store do. 0 means unlimited.
	BytesPerSecond int64
}

// LatencyStore delays each request to the Store it wraps as an object store
// across a network would: FirstByte, plus the payload at BytesPerSecond.
// Benchmarks use it to make request counts and bytes cost what they cost in
// production. It is safe for concurrent use; requests do not queue behind
// each other.
type LatencyStore struct {
	inner Store
	opts  LatencyOptions
}

var _ Store = (*LatencyStore)(nil)

// NewLatencyStore wraps inner.
func NewLatencyStore(inner Store, opts LatencyOptions) (*LatencyStore, error) {
	if opts.FirstByte < 0 || opts.BytesPerSecond < 0 {
		return nil, fmt.Errorf("latency store: negative first-byte latency %v or bandwidth %d", opts.FirstByte, opts.BytesPerSecond)
	}
	return &LatencyStore{inner: inner, opts: opts}, nil
}

// Unwrap returns the wrapped store.
func (l *LatencyStore) Unwrap() Store { return l.inner }

// wait sleeps for the cost of a request moving n payload bytes, or until
// ctx ends.
func (l *LatencyStore) wait(ctx context.Context, n int) error {
	d := l.opts.FirstByte
	if l.opts.BytesPerSecond > 0 && n > 0 {
		d += time.Duration(float64(n) / float64(l.opts.BytesPerSecond) * float64(time.Second))
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("latency store: %w", ctx.Err())
	}
}

func (l *LatencyStore) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := l.inner.Get(ctx, key)
	if werr := l.wait(ctx, len(b)); werr != nil {
		return nil, werr
	}
	return b, err
}

func (l *LatencyStore) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	b, err := l.inner.GetRange(ctx, key, offset, length)
	if werr := l.wait(ctx, len(b)); werr != nil {
		return nil, werr
	}
	return b, err
}

func (l *LatencyStore) Size(ctx context.Context, key string) (int64, error) {
	if err := l.wait(ctx, 0); err != nil {
		return 0, err
	}
	return l.inner.Size(ctx, key)
}

// Writes pay their cost before they take effect, as an upload does.

func (l *LatencyStore) Put(ctx context.Context, key string, data []byte) error {
	if err := l.wait(ctx, len(data)); err != nil {
		return err
	}
	return l.inner.Put(ctx, key, data)
}

func (l *LatencyStore) Create(ctx context.Context, key string, data []byte) error {
	if err := l.wait(ctx, len(data)); err != nil {
		return err
	}
	return l.inner.Create(ctx, key, data)
}

func (l *LatencyStore) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	if err := l.wait(ctx, 0); err != nil {
		return ListPage{}, err
	}
	return l.inner.List(ctx, opts)
}

func (l *LatencyStore) Delete(ctx context.Context, key string) error {
	if err := l.wait(ctx, 0); err != nil {
		return err
	}
	return l.inner.Delete(ctx, key)
}

func (l *LatencyStore) Close() error { return l.inner.Close() }
