package engine

import (
	"bytes"
	"math/bits"
	"sync"
)

// pageCache holds recent page images in memory, in front of Pebble, under a
// byte budget with least-recently-used eviction.
//
// The rule that keeps it correct: an entry for (volume, page) is always the
// newest image of that page that exists, as of its generation. A commit
// replaces the entries of the pages it writes before it publishes the new
// version; a reader inserts an image only while no commit beyond its
// snapshot has begun (the volume's committing version, checked under the
// shard lock), so it can never put back an image that a commit has already
// superseded. A truncation bumps the volume's generation, which makes every
// older entry of the volume a miss. Entries may vanish at any moment
// (eviction): absence is always safe.
type pageCache struct {
	shards [cacheShards]cacheShard
}

const cacheShards = 16

type cacheKey struct {
	vol  *Volume
	page PageNo
}

type cacheEntry struct {
	key     cacheKey
	version Version
	gen     uint64
	data    []byte // immutable once inserted
	// owned says nothing outside the cache refers to data, so that it
	// can be recycled (pageBufs) when the entry drops it.
	owned      bool
	prev, next *cacheEntry
}

type cacheShard struct {
	mu struct {
		sync.Mutex
		entries map[cacheKey]*cacheEntry
		lru     cacheEntry // sentinel: lru.next is the most recent
		bytes   int64
	}
	budget int64
}

func newPageCache(budget int64) *pageCache {
	c := &pageCache{}
	for i := range c.shards {
		s := &c.shards[i]
		s.budget = budget / cacheShards
		s.mu.entries = map[cacheKey]*cacheEntry{}
		s.mu.lru.next, s.mu.lru.prev = &s.mu.lru, &s.mu.lru
	}
	return c
}

func (c *pageCache) shard(k cacheKey) *cacheShard {
	h := uint64(k.page)*0x9e3779b97f4a7c15 ^ uint64(k.vol.cacheSeed)
	return &c.shards[h>>60]
}

// get copies into dst the cached image of page p as seen by a snapshot of
// version v, if the cache has it.
func (c *pageCache) get(vol *Volume, p PageNo, v Version, dst []byte) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	k := cacheKey{vol, p}
	s := c.shard(k)
	gen := vol.cacheGen.Load()
	s.mu.Lock()
	e, ok := s.mu.entries[k]
	if !ok || e.gen != gen || e.version > v {
		s.mu.Unlock()
		return nil, false
	}
	s.moveFrontLocked(e)
	dst = append(dst, e.data...)
	s.mu.Unlock()
	return dst, true
}

// has reports whether the cache has the image of page p as seen by a
// snapshot of version v, without copying it or counting it as used.
func (c *pageCache) has(vol *Volume, p PageNo, v Version) bool {
	if c == nil {
		return false
	}
	k := cacheKey{vol, p}
	s := c.shard(k)
	gen := vol.cacheGen.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.mu.entries[k]
	return ok && e.gen == gen && e.version <= v
}

// equal reports whether the cache has the image of page p as seen by a
// snapshot of version v, and if it does, whether that image is data:
// get without the copy.
func (c *pageCache) equal(vol *Volume, p PageNo, v Version, data []byte) (same, cached bool) {
	if c == nil {
		return false, false
	}
	k := cacheKey{vol, p}
	s := c.shard(k)
	gen := vol.cacheGen.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.mu.entries[k]
	if !ok || e.gen != gen || e.version > v {
		return false, false
	}
	s.moveFrontLocked(e)
	return bytes.Equal(e.data, data), true
}

// insert adds the image of page p written at version v, read by a reader
// of snapshot version asOf, unless a commit beyond asOf has begun or the
// cache already has a newer image.
func (c *pageCache) insert(vol *Volume, p PageNo, v, asOf Version, data []byte) {
	if c == nil {
		return
	}
	k := cacheKey{vol, p}
	s := c.shard(k)
	// The generation is read before the committing check: a truncation
	// stores committing before it bumps the generation, so an image that
	// passes the check is tagged with a generation no newer than its own.
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := vol.cacheGen.Load()
	if vol.committing.Load() != uint64(asOf) {
		return
	}
	s.putLocked(k, v, gen, data, false)
}

// replace installs the image of page p a commit just wrote at version v,
// and returns the version of the image it replaces, the page's newest
// before v, or 0 if the cache did not have it. The caller owns data no
// more: the cache recycles it (pageBufs) once it drops it.
func (c *pageCache) replace(vol *Volume, p PageNo, v Version, data []byte) (prev Version) {
	if c == nil {
		pageBufs.put(data)
		return 0
	}
	k := cacheKey{vol, p}
	s := c.shard(k)
	gen := vol.cacheGen.Load()
	s.mu.Lock()
	if e, ok := s.mu.entries[k]; ok && e.gen == gen && e.version < v {
		prev = e.version
	}
	s.putLocked(k, v, gen, data, true)
	s.mu.Unlock()
	return prev
}

// remove drops page p's entry.
func (c *pageCache) remove(vol *Volume, p PageNo) {
	if c == nil {
		return
	}
	k := cacheKey{vol, p}
	s := c.shard(k)
	s.mu.Lock()
	if e, ok := s.mu.entries[k]; ok {
		s.unlinkLocked(e)
	}
	s.mu.Unlock()
}

// putLocked installs data as the image of page k at version v; owned says
// whether the cache may recycle data once it drops it.
func (s *cacheShard) putLocked(k cacheKey, v Version, gen uint64, data []byte, owned bool) {
	size := int64(len(data))
	if size > s.budget {
		if e, ok := s.mu.entries[k]; ok {
			s.unlinkLocked(e)
		}
		if owned {
			pageBufs.put(data)
		}
		return
	}
	if e, ok := s.mu.entries[k]; ok {
		if e.gen == gen && e.version > v {
			if owned {
				pageBufs.put(data)
			}
			return // a newer image is already here
		}
		s.mu.bytes += size - int64(len(e.data))
		if e.owned {
			pageBufs.put(e.data)
		}
		e.version, e.gen, e.data, e.owned = v, gen, data, owned
		s.moveFrontLocked(e)
	} else {
		e := &cacheEntry{key: k, version: v, gen: gen, data: data, owned: owned}
		s.mu.entries[k] = e
		s.mu.bytes += size
		e.prev, e.next = &s.mu.lru, s.mu.lru.next
		e.prev.next, e.next.prev = e, e
	}
	for s.mu.bytes > s.budget {
		s.unlinkLocked(s.mu.lru.prev)
	}
}

func (s *cacheShard) moveFrontLocked(e *cacheEntry) {
	if s.mu.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = &s.mu.lru, s.mu.lru.next
	e.prev.next, e.next.prev = e, e
}

func (s *cacheShard) unlinkLocked(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	delete(s.mu.entries, e.key)
	s.mu.bytes -= int64(len(e.data))
	if e.owned {
		pageBufs.put(e.data)
	}
}

// dropVolume removes every entry of vol, for Engine.Close of a volume.
func (c *pageCache) dropVolume(vol *Volume) {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.mu.entries {
			if k.vol == vol {
				s.unlinkLocked(e)
			}
		}
		s.mu.Unlock()
	}
}

// pageBufs recycles page buffers between write transactions, which stage
// every page SQLite writes in one, and the cache, which keeps a commit's
// buffers as its images until it drops them: a small write transaction
// then allocates no page-sized memory, which is most of what it would
// allocate, and the garbage collector has that much less to do.
var pageBufs = newPagePool(1 << 20)

// pagePool holds free buffers of each valid page size, up to about
// budget bytes of each.
type pagePool struct {
	free [17]chan []byte // by log2 of the size; 9 (512) to 16 (65536) used
}

func newPagePool(budget int) *pagePool {
	p := &pagePool{}
	for shift := 9; shift <= 16; shift++ {
		p.free[shift] = make(chan []byte, max(4, budget>>shift))
	}
	return p
}

// slot returns the free list for buffers of n bytes, nil if n is not a
// page size.
func (p *pagePool) slot(n int) chan []byte {
	if n < 512 || n > 65536 || n&(n-1) != 0 {
		return nil
	}
	return p.free[bits.Len(uint(n))-1]
}

// get returns a buffer of n bytes, of any content.
func (p *pagePool) get(n int) []byte {
	select {
	case b := <-p.slot(n):
		return b
	default:
		return make([]byte, n)
	}
}

// put gives b back for reuse; nothing may refer to it any more.
func (p *pagePool) put(b []byte) {
	if len(b) != cap(b) {
		return // part of a larger allocation
	}
	select {
	case p.slot(len(b)) <- b:
	default:
	}
}
