package remote

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemStore is a Store held in process memory. It is for tests and for
// engines that need no durability. The zero value is not usable; call
// NewMemStore, or Open a mem:// URL.
//
// A MemStore behaves like a bucket rather than a connection: Close does not
// drop its objects. That is what lets two engines in one process share
// mem://NAME, and lets a test close an engine and reopen the same URL to find
// its objects still there.
type MemStore struct {
	mu struct {
		sync.RWMutex
		// objects is sorted by key and holds each key at most once. A data
		// slice is never modified once stored, so a reader may copy it after
		// releasing mu.
		objects []memObject
	}
}

type memObject struct {
	key      string
	data     []byte
	modified time.Time
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty store that nothing else shares.
func NewMemStore() *MemStore {
	return &MemStore{}
}

// memRegistry holds the stores opened by name through mem:// URLs. Entries
// live as long as the process, like buckets on a server that outlives its
// clients.
var memRegistry struct {
	sync.Mutex
	stores map[string]*MemStore
}

// sharedMemStore returns the process-wide store called name, creating it on
// first use.
func sharedMemStore(name string) *MemStore {
	memRegistry.Lock()
	defer memRegistry.Unlock()
	if memRegistry.stores == nil {
		memRegistry.stores = make(map[string]*MemStore)
	}
	s, ok := memRegistry.stores[name]
	if !ok {
		s = NewMemStore()
		memRegistry.stores[name] = s
	}
	return s
}

// findLocked returns the index of key in s.mu.objects, or where it would be
// inserted, and whether it is present.
func (s *MemStore) findLocked(key string) (int, bool) {
	return slices.BinarySearchFunc(s.mu.objects, key, func(o memObject, k string) int {
		return strings.Compare(o.key, k)
	})
}

// lookup returns the stored object at key, whose data the caller must not
// modify.
func (s *MemStore) lookup(key string) (memObject, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.findLocked(key)
	if !ok {
		return memObject{}, false
	}
	return s.mu.objects[i], true
}

// Get implements Store.
func (s *MemStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, fmt.Errorf("mem get: %w", err)
	}
	o, ok := s.lookup(key)
	if !ok {
		return nil, fmt.Errorf("mem get %s: %w", key, ErrNotFound)
	}
	return slices.Clone(o.data), nil
}

// GetRange implements Store.
func (s *MemStore) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, fmt.Errorf("mem get range: %w", err)
	}
	if err := ValidateRange(offset, length); err != nil {
		return nil, fmt.Errorf("mem get range %s: %w", key, err)
	}
	o, ok := s.lookup(key)
	if !ok {
		return nil, fmt.Errorf("mem get range %s: %w", key, ErrNotFound)
	}
	start, end, err := ClampRange(int64(len(o.data)), offset, length)
	if err != nil {
		return nil, fmt.Errorf("mem get range %s: %w", key, err)
	}
	return slices.Clone(o.data[start:end:end]), nil
}

// Size implements Store.
func (s *MemStore) Size(ctx context.Context, key string) (int64, error) {
	if err := checkCall(ctx, key); err != nil {
		return 0, fmt.Errorf("mem size: %w", err)
	}
	o, ok := s.lookup(key)
	if !ok {
		return 0, fmt.Errorf("mem size %s: %w", key, ErrNotFound)
	}
	return int64(len(o.data)), nil
}

// Put implements Store.
func (s *MemStore) Put(ctx context.Context, key string, data []byte) error {
	if err := checkCall(ctx, key); err != nil {
		return fmt.Errorf("mem put: %w", err)
	}
	o := memObject{key: key, data: cloneNonNil(data), modified: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.findLocked(key); ok {
		s.mu.objects[i] = o
	} else {
		s.mu.objects = slices.Insert(s.mu.objects, i, o)
	}
	return nil
}

// Create implements Store.
func (s *MemStore) Create(ctx context.Context, key string, data []byte) error {
	if err := checkCall(ctx, key); err != nil {
		return fmt.Errorf("mem create: %w", err)
	}
	o := memObject{key: key, data: cloneNonNil(data), modified: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.findLocked(key)
	if ok {
		return fmt.Errorf("mem create %s: %w", key, ErrExists)
	}
	s.mu.objects = slices.Insert(s.mu.objects, i, o)
	return nil
}

// List implements Store.
func (s *MemStore) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	if err := ctx.Err(); err != nil {
		return ListPage{}, fmt.Errorf("mem list: %w", err)
	}
	limit, err := ListLimit(opts)
	if err != nil {
		return ListPage{}, fmt.Errorf("mem list: %w", err)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	start, _ := s.findLocked(opts.Prefix)
	if opts.StartAfter >= opts.Prefix {
		i, found := s.findLocked(opts.StartAfter)
		if found {
			i++
		}
		start = i
	}
	var page ListPage
	for _, o := range s.mu.objects[start:] {
		if !strings.HasPrefix(o.key, opts.Prefix) {
			break
		}
		if len(page.Objects) == limit {
			page.Truncated = true
			break
		}
		page.Objects = append(page.Objects, ObjectInfo{Key: o.key, Size: int64(len(o.data)), Modified: o.modified})
	}
	return page, nil
}

// Delete implements Store.
func (s *MemStore) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return fmt.Errorf("mem delete: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.findLocked(key); ok {
		s.mu.objects = slices.Delete(s.mu.objects, i, i+1)
	}
	return nil
}

// Close implements Store. It keeps the objects: see the MemStore
// documentation.
func (s *MemStore) Close() error {
	return nil
}

// cloneNonNil copies b, returning an empty non-nil slice for empty input so
// that stored and returned objects are never nil.
func cloneNonNil(b []byte) []byte {
	return append(make([]byte, 0, len(b)), b...)
}
