package engine

import (
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
	key        cacheKey
	version    Version
	gen        uint64
	data       []byte // immutable once inserted
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
	s.putLocked(k, v, gen, data)
}

// replace installs the image of page p a commit just wrote at version v.
// The caller owns data no more.
func (c *pageCache) replace(vol *Volume, p PageNo, v Version, data []byte) {
	if c == nil {
		return
	}
	k := cacheKey{vol, p}
	s := c.shard(k)
	s.mu.Lock()
	s.putLocked(k, v, vol.cacheGen.Load(), data)
	s.mu.Unlock()
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

func (s *cacheShard) putLocked(k cacheKey, v Version, gen uint64, data []byte) {
	size := int64(len(data))
	if size > s.budget {
		if e, ok := s.mu.entries[k]; ok {
			s.unlinkLocked(e)
		}
		return
	}
	if e, ok := s.mu.entries[k]; ok {
		if e.gen == gen && e.version > v {
			return // a newer image is already here
		}
		s.mu.bytes += size - int64(len(e.data))
		e.version, e.gen, e.data = v, gen, data
		s.moveFrontLocked(e)
	} else {
		e := &cacheEntry{key: k, version: v, gen: gen, data: data}
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
