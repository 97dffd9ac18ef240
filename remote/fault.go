package remote

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fault is what a FaultStore does to one request.
type Fault int

const (
	// Pass lets the request through untouched.
	Pass Fault = iota
	// FailBefore returns ErrInjected without performing the request: the
	// request never reached the store.
	FailBefore
	// FailAfter performs the request, then returns ErrInjected instead of
	// its result: the response was lost, so a write may have taken effect.
	FailAfter
	// Delay waits Action.Delay (or until the context ends), then performs
	// the request.
	Delay
	// Truncate performs a read and returns only the first half of its
	// bytes, with no error: a short body that a careless reader would
	// trust. Other requests pass.
	Truncate
	// Corrupt performs a read and flips one bit of the bytes it returns,
	// with no error. Other requests pass.
	Corrupt
)

var faultNames = map[Fault]string{
	Pass: "pass", FailBefore: "fail-before", FailAfter: "fail-after",
	Delay: "delay", Truncate: "truncate", Corrupt: "corrupt",
}

func (f Fault) String() string {
	if s, ok := faultNames[f]; ok {
		return s
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// Action is a Fault with its parameters.
type Action struct {
	Fault Fault
	Delay time.Duration // for Delay
}

// Request describes a request to a Schedule.
type Request struct {
	Seq int64  // 0 for the first request through this FaultStore, then 1, 2, ...
	Op  Op     // the kind of request
	Key string // the key, or the prefix for List
}

// Schedule decides the fate of each request. FaultStore calls Decide once
// per request, in the order requests arrive, under a lock, so a Schedule
// need not be safe for concurrent use, and a single-threaded caller sees
// the same decisions on every run.
type Schedule interface {
	Decide(r Request) Action
}

// ScheduleFunc adapts a function to a Schedule.
type ScheduleFunc func(r Request) Action

func (f ScheduleFunc) Decide(r Request) Action { return f(r) }

// Never passes every request.
var Never Schedule = ScheduleFunc(func(Request) Action { return Action{} })

// Always applies a to every request of the given ops (every op if none):
// Always(Action{Fault: FailBefore}) is a dead store.
func Always(a Action, ops ...Op) Schedule {
	return ScheduleFunc(func(r Request) Action {
		if len(ops) == 0 || slices.Contains(ops, r.Op) {
			return a
		}
		return Action{}
	})
}

// Random applies one of actions, chosen uniformly, to a fraction rate of
// the requests of the given ops (every op if none), drawn from a PRNG
// seeded with seed: the same seed and the same sequence of requests give
// the same faults.
func Random(seed uint64, rate float64, actions []Action, ops ...Op) Schedule {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return ScheduleFunc(func(r Request) Action {
		if len(actions) == 0 || (len(ops) > 0 && !slices.Contains(ops, r.Op)) {
			return Action{}
		}
		if rng.Float64() >= rate {
			return Action{}
		}
		return actions[rng.IntN(len(actions))]
	})
}

// Nth applies a to the requests of op (any op if op < 0) whose key starts
// with keyPrefix, the n-th such request first (counting from 1), and then
// the next count-1 of them; every other request passes.
func Nth(op Op, keyPrefix string, n, count int, a Action) Schedule {
	seen := 0
	return ScheduleFunc(func(r Request) Action {
		if (op >= 0 && r.Op != op) || !strings.HasPrefix(r.Key, keyPrefix) {
			return Action{}
		}
		seen++
		if seen >= n && seen < n+count {
			return a
		}
		return Action{}
	})
}

// FaultStore injects failures, delays and bad bytes into requests to the
// Store it wraps, as its Schedule decides. Tests use it as a flaky or dead
// remote. It is safe for concurrent use.
type FaultStore struct {
	inner Store

	mu struct {
		sync.Mutex
		schedule Schedule // decides each request's fate
		seq      int64    // sequence number of the next request
		injected map[Fault]int64
	}
}

var _ Store = (*FaultStore)(nil)

// NewFaultStore wraps inner; a nil schedule means Never.
func NewFaultStore(inner Store, s Schedule) *FaultStore {
	f := &FaultStore{inner: inner}
	f.SetSchedule(s)
	f.mu.injected = map[Fault]int64{}
	return f
}

// SetSchedule replaces the schedule; a nil schedule means Never.
func (f *FaultStore) SetSchedule(s Schedule) {
	if s == nil {
		s = Never
	}
	f.mu.Lock()
	f.mu.schedule = s
	f.mu.Unlock()
}

// Injected returns how many requests got each fault other than Pass.
func (f *FaultStore) Injected() map[Fault]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[Fault]int64, len(f.mu.injected))
	for k, v := range f.mu.injected {
		out[k] = v
	}
	return out
}

// Unwrap returns the wrapped store.
func (f *FaultStore) Unwrap() Store { return f.inner }

func (f *FaultStore) decide(op Op, key string) Action {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.mu.schedule.Decide(Request{Seq: f.mu.seq, Op: op, Key: key})
	f.mu.seq++
	if a.Fault != Pass {
		f.mu.injected[a.Fault]++
	}
	return a
}

func injected(a Action, op Op, key string) error {
	return fmt.Errorf("%s %s: %w (%s)", op, key, ErrInjected, a.Fault)
}

// before applies the part of a that happens before the request: a delay
// or a failure. It reports an error if the request must not be performed.
func (f *FaultStore) before(ctx context.Context, a Action, op Op, key string) error {
	switch a.Fault {
	case FailBefore:
		return injected(a, op, key)
	case Delay:
		t := time.NewTimer(a.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w", op, key, ctx.Err())
		}
	}
	return nil
}

// read runs a read request and applies a to its result.
func (f *FaultStore) read(ctx context.Context, op Op, key string, do func() ([]byte, error)) ([]byte, error) {
	a := f.decide(op, key)
	if err := f.before(ctx, a, op, key); err != nil {
		return nil, err
	}
	b, err := do()
	if err != nil {
		return b, err
	}
	switch a.Fault {
	case FailAfter:
		return nil, injected(a, op, key)
	case Truncate:
		b = b[:len(b)/2]
	case Corrupt:
		if len(b) > 0 {
			b[len(b)/2] ^= 0x10
		}
	}
	return b, nil
}

// other runs a request that returns no bytes and applies a to it.
func (f *FaultStore) other(ctx context.Context, op Op, key string, do func() error) error {
	a := f.decide(op, key)
	if err := f.before(ctx, a, op, key); err != nil {
		return err
	}
	if err := do(); err != nil {
		return err
	}
	if a.Fault == FailAfter {
		return injected(a, op, key)
	}
	return nil
}

func (f *FaultStore) Get(ctx context.Context, key string) ([]byte, error) {
	return f.read(ctx, OpGet, key, func() ([]byte, error) { return f.inner.Get(ctx, key) })
}

func (f *FaultStore) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	return f.read(ctx, OpGetRange, key, func() ([]byte, error) { return f.inner.GetRange(ctx, key, offset, length) })
}

func (f *FaultStore) Size(ctx context.Context, key string) (int64, error) {
	var n int64
	err := f.other(ctx, OpSize, key, func() (err error) { n, err = f.inner.Size(ctx, key); return err })
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (f *FaultStore) Put(ctx context.Context, key string, data []byte) error {
	return f.other(ctx, OpPut, key, func() error { return f.inner.Put(ctx, key, data) })
}

func (f *FaultStore) Create(ctx context.Context, key string, data []byte) error {
	return f.other(ctx, OpCreate, key, func() error { return f.inner.Create(ctx, key, data) })
}

func (f *FaultStore) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	var p ListPage
	err := f.other(ctx, OpList, opts.Prefix, func() (err error) { p, err = f.inner.List(ctx, opts); return err })
	if err != nil {
		return ListPage{}, err
	}
	return p, nil
}

func (f *FaultStore) Delete(ctx context.Context, key string) error {
	return f.other(ctx, OpDelete, key, func() error { return f.inner.Delete(ctx, key) })
}

func (f *FaultStore) Close() error { return f.inner.Close() }
