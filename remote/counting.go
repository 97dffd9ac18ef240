package remote

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
)

// Op names a kind of Store request.
type Op int

// The kinds of request, one per Store method that reaches the store.
const (
	OpGet Op = iota
	OpGetRange
	OpSize
	OpPut
	OpCreate
	OpList
	OpDelete
	numOps
)

var opNames = [numOps]string{"get", "get_range", "size", "put", "create", "list", "delete"}

// String returns the op's name in snake case ("get_range").
func (o Op) String() string {
	if o < 0 || o >= numOps {
		return fmt.Sprintf("op(%d)", int(o))
	}
	return opNames[o]
}

// Ops lists every kind of request, for iteration.
func Ops() []Op {
	ops := make([]Op, numOps)
	for i := range ops {
		ops[i] = Op(i)
	}
	return ops
}

// OpStats counts one kind of request.
type OpStats struct {
	Requests int64 // calls, successful or not
	Errors   int64 // calls that returned an error (ErrNotFound and ErrExists included)
	Bytes    int64 // payload bytes moved: returned by reads, sent by writes
}

// Stats is a snapshot of a CountingStore's counters.
type Stats struct {
	Ops [numOps]OpStats
}

// Op returns the counters of one kind of request.
func (s Stats) Op(o Op) OpStats { return s.Ops[o] }

// Requests returns the number of requests of every kind.
func (s Stats) Requests() int64 {
	var n int64
	for _, o := range s.Ops {
		n += o.Requests
	}
	return n
}

// BytesRead returns the payload bytes returned by Get and GetRange.
func (s Stats) BytesRead() int64 { return s.Ops[OpGet].Bytes + s.Ops[OpGetRange].Bytes }

// BytesWritten returns the payload bytes sent by Put and Create.
func (s Stats) BytesWritten() int64 { return s.Ops[OpPut].Bytes + s.Ops[OpCreate].Bytes }

// Sub returns the counts accumulated between prev and s.
func (s Stats) Sub(prev Stats) Stats {
	for i := range s.Ops {
		s.Ops[i].Requests -= prev.Ops[i].Requests
		s.Ops[i].Errors -= prev.Ops[i].Errors
		s.Ops[i].Bytes -= prev.Ops[i].Bytes
	}
	return s
}

// String summarises the non-zero counters, e.g.
// "3 requests, 12345 bytes read, 0 written (get_range 2/12345B, list 1)".
func (s Stats) String() string {
	var parts []string
	for i, o := range s.Ops {
		if o.Requests == 0 {
			continue
		}
		p := fmt.Sprintf("%s %d", Op(i), o.Requests)
		if o.Bytes > 0 {
			p += fmt.Sprintf("/%dB", o.Bytes)
		}
		if o.Errors > 0 {
			p += fmt.Sprintf(" (%d failed)", o.Errors)
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("%d requests, %d bytes read, %d written (%s)",
		s.Requests(), s.BytesRead(), s.BytesWritten(), strings.Join(parts, ", "))
}

// CountingStore counts the requests and payload bytes that pass through it
// to the Store it wraps, by kind of request. It is where benchmarks and
// tests measure "requests and bytes at the object-store boundary". It is
// safe for concurrent use; counters are updated when a request returns.
type CountingStore struct {
	inner Store
	ops   [numOps]struct{ requests, errors, bytes atomic.Int64 }
}

var _ Store = (*CountingStore)(nil)

// NewCountingStore wraps inner.
func NewCountingStore(inner Store) *CountingStore { return &CountingStore{inner: inner} }

// Stats returns a snapshot of the counters.
func (c *CountingStore) Stats() Stats {
	var s Stats
	for i := range c.ops {
		s.Ops[i] = OpStats{
			Requests: c.ops[i].requests.Load(),
			Errors:   c.ops[i].errors.Load(),
			Bytes:    c.ops[i].bytes.Load(),
		}
	}
	return s
}

// Reset sets every counter to zero.
func (c *CountingStore) Reset() {
	for i := range c.ops {
		c.ops[i].requests.Store(0)
		c.ops[i].errors.Store(0)
		c.ops[i].bytes.Store(0)
	}
}

// Unwrap returns the wrapped store.
func (c *CountingStore) Unwrap() Store { return c.inner }

func (c *CountingStore) count(o Op, bytes int, err error) {
	c.ops[o].requests.Add(1)
	c.ops[o].bytes.Add(int64(bytes))
	if err != nil {
		c.ops[o].errors.Add(1)
	}
}

func (c *CountingStore) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := c.inner.Get(ctx, key)
	c.count(OpGet, len(b), err)
	return b, err
}

func (c *CountingStore) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	b, err := c.inner.GetRange(ctx, key, offset, length)
	c.count(OpGetRange, len(b), err)
	return b, err
}

func (c *CountingStore) Size(ctx context.Context, key string) (int64, error) {
	n, err := c.inner.Size(ctx, key)
	c.count(OpSize, 0, err)
	return n, err
}

func (c *CountingStore) Put(ctx context.Context, key string, data []byte) error {
	err := c.inner.Put(ctx, key, data)
	c.count(OpPut, len(data), err)
	return err
}

func (c *CountingStore) Create(ctx context.Context, key string, data []byte) error {
	err := c.inner.Create(ctx, key, data)
	c.count(OpCreate, len(data), err)
	return err
}

func (c *CountingStore) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	p, err := c.inner.List(ctx, opts)
	c.count(OpList, 0, err)
	return p, err
}

func (c *CountingStore) Delete(ctx context.Context, key string) error {
	err := c.inner.Delete(ctx, key)
	c.count(OpDelete, 0, err)
	return err
}

func (c *CountingStore) Close() error { return c.inner.Close() }
