package remote

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestCountingStore_Stats(t *testing.T) {
	ctx := context.Background()
	c := NewCountingStore(NewMemStore())
	if err := c.Put(ctx, "a", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, "b", []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, "b", []byte("xyz")); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := c.Get(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetRange(ctx, "a", 1, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	before := c.Stats()
	if _, err := c.List(ctx, ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Size(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	s := c.Stats()
	want := map[Op]OpStats{
		OpPut:      {Requests: 1, Bytes: 5},
		OpCreate:   {Requests: 2, Errors: 1, Bytes: 6},
		OpGet:      {Requests: 2, Errors: 1, Bytes: 5},
		OpGetRange: {Requests: 1, Bytes: 2},
		OpList:     {Requests: 1},
		OpSize:     {Requests: 1},
		OpDelete:   {Requests: 1},
	}
	for op, w := range want {
		if s.Op(op) != w {
			t.Errorf("%s: got %+v, want %+v", op, s.Op(op), w)
		}
	}
	if s.Requests() != 9 || s.BytesRead() != 7 || s.BytesWritten() != 11 {
		t.Errorf("totals: %s", s)
	}
	if d := s.Sub(before); d.Requests() != 3 || d.BytesRead() != 0 {
		t.Errorf("delta: %s", d)
	}
	c.Reset()
	if c.Stats().Requests() != 0 {
		t.Errorf("after reset: %s", c.Stats())
	}
}

func TestLatencyStore_Wait(t *testing.T) {
	ctx := context.Background()
	l, err := NewLatencyStore(NewMemStore(), LatencyOptions{FirstByte: 20 * time.Millisecond, BytesPerSecond: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 100<<10) // 100 KiB at 1 MiB/s: about 98 ms
	start := time.Now()
	if err := l.Put(ctx, "k", data); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: the store must cost at least what it emulates.
	if d, min := time.Since(start), 2*(20*time.Millisecond+97*time.Millisecond); d < min {
		t.Fatalf("put+get took %v, want at least %v", d, min)
	}
	t.Run("ContextEnds", func(t *testing.T) {
		slow, _ := NewLatencyStore(NewMemStore(), LatencyOptions{FirstByte: time.Hour})
		ctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(10 * time.Millisecond); cancel() }()
		if err := slow.Put(ctx, "k", nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
	t.Run("BadOptions", func(t *testing.T) {
		if _, err := NewLatencyStore(NewMemStore(), LatencyOptions{FirstByte: -1}); err == nil {
			t.Fatal("negative latency accepted")
		}
	})
}

func TestFaultStore_Faults(t *testing.T) {
	ctx := context.Background()
	data := []byte("0123456789")
	newStore := func(s Schedule) (*FaultStore, Store) {
		mem := NewMemStore()
		if err := mem.Put(ctx, "obj", data); err != nil {
			t.Fatal(err)
		}
		return NewFaultStore(mem, s), mem
	}
	t.Run("FailBefore", func(t *testing.T) {
		f, mem := newStore(Always(Action{Fault: FailBefore}, OpCreate))
		if err := f.Create(ctx, "new", data); !errors.Is(err, ErrInjected) {
			t.Fatalf("got %v", err)
		}
		if _, err := mem.Get(ctx, "new"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("request was performed: %v", err)
		}
		if _, err := f.Get(ctx, "obj"); err != nil {
			t.Fatalf("other ops must pass: %v", err)
		}
	})
	t.Run("FailAfter", func(t *testing.T) {
		f, mem := newStore(Always(Action{Fault: FailAfter}, OpCreate))
		if err := f.Create(ctx, "new", data); !errors.Is(err, ErrInjected) {
			t.Fatalf("got %v", err)
		}
		if got, err := mem.Get(ctx, "new"); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("lost response: request must have been performed: %q %v", got, err)
		}
	})
	t.Run("Truncate", func(t *testing.T) {
		f, _ := newStore(Always(Action{Fault: Truncate}))
		got, err := f.Get(ctx, "obj")
		if err != nil || !bytes.Equal(got, data[:5]) {
			t.Fatalf("got %q %v", got, err)
		}
	})
	t.Run("Corrupt", func(t *testing.T) {
		f, _ := newStore(Always(Action{Fault: Corrupt}))
		got, err := f.GetRange(ctx, "obj", 2, 4)
		if err != nil || len(got) != 4 || bytes.Equal(got, data[2:6]) {
			t.Fatalf("got %q %v", got, err)
		}
	})
	t.Run("Delay", func(t *testing.T) {
		f, _ := newStore(Always(Action{Fault: Delay, Delay: time.Hour}))
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, err := f.Get(ctx, "obj"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("Nth", func(t *testing.T) {
		f, _ := newStore(Nth(OpGet, "obj", 2, 2, Action{Fault: FailBefore}))
		var failed []int
		for i := 1; i <= 5; i++ {
			if _, err := f.Get(ctx, "obj"); err != nil {
				failed = append(failed, i)
			}
		}
		if len(failed) != 2 || failed[0] != 2 || failed[1] != 3 {
			t.Fatalf("failed requests %v, want [2 3]", failed)
		}
		if f.Injected()[FailBefore] != 2 {
			t.Fatalf("injected %v", f.Injected())
		}
	})
	t.Run("RandomIsDeterministic", func(t *testing.T) {
		run := func() []bool {
			f, _ := newStore(Random(7, 0.2, []Action{{Fault: FailBefore}}))
			var out []bool
			for range 200 {
				_, err := f.Get(ctx, "obj")
				out = append(out, err != nil)
			}
			return out
		}
		a, b := run(), run()
		n := 0
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("request %d: runs differ", i)
			}
			if a[i] {
				n++
			}
		}
		if n < 20 || n > 60 {
			t.Fatalf("%d of 200 failed at rate 0.2", n)
		}
	})
}
