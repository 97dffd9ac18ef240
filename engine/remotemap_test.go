package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/segment"
)

// pageLoc is where the model says a page's image lives: a frame of a
// segment, or nowhere (zeros).
type pageLoc struct {
	seg    SegmentID
	offset int64
	zero   bool
}

// mapModel is the brute-force reference for maps: every page's location,
// commit by commit.
type mapModel struct {
	count uint32
	locs  map[PageNo]pageLoc
}

func (m mapModel) clone() mapModel {
	c := mapModel{count: m.count, locs: make(map[PageNo]pageLoc, len(m.locs))}
	for p, l := range m.locs {
		c.locs[p] = l
	}
	return c
}

// applyMap moves the model over map m, reading locations through
// m.locate, which is what a pull does.
func (m mapModel) applyMap(t testing.TB, rm *remoteMap) mapModel {
	t.Helper()
	out := m.clone()
	out.count = rm.pageCount
	for p := range out.locs {
		if uint32(p) > rm.pageCount {
			delete(out.locs, p)
		}
	}
	for p := range roaring.Values(rm.changeset) {
		ref, fr, zero, ok := rm.locate(PageNo(p))
		if !ok {
			t.Fatalf("page %d is in the changeset, locate says unchanged", p)
		}
		if zero {
			out.locs[PageNo(p)] = pageLoc{zero: true}
			continue
		}
		if fr.First > PageNo(p) || fr.Last < PageNo(p) || fr.Length == 0 {
			t.Fatalf("page %d located in frame %+v", p, fr)
		}
		out.locs[PageNo(p)] = pageLoc{seg: ref.id, offset: fr.Offset}
	}
	return out
}

func (m mapModel) equal(o mapModel) error {
	if m.count != o.count {
		return fmt.Errorf("%d pages, want %d", m.count, o.count)
	}
	for p := PageNo(1); uint32(p) <= m.count; p++ {
		a, aok := m.locs[p]
		b, bok := o.locs[p]
		if aok != bok || a != b {
			return fmt.Errorf("page %d at %+v (%v), want %+v (%v)", p, a, aok, b, bok)
		}
	}
	return nil
}

// genMaps returns n consecutive remote commits from version 0, made as a
// push makes them (segments of contiguous multi-page frames, zero pages,
// growth, truncations in the middle of frames), and the model after each:
// models[i] is the state after commit i (models[0] the empty volume).
func genMaps(rng *rand.Rand, n int) ([]*remoteMap, []mapModel) {
	models := []mapModel{{locs: map[PageNo]pageLoc{}}}
	var maps []*remoteMap
	ver := Version(0)
	for i := range n {
		prev := models[len(models)-1]
		m := &remoteMap{
			fromSeq:   uint64(i),
			toSeq:     uint64(i + 1),
			parent:    ver,
			version:   ver + 1 + Version(rng.IntN(3)),
			pageSize:  512,
			time:      time.Unix(0, int64(i)*1e9),
			changeset: roaring.New(),
		}
		ver = m.version
		m.minCount = prev.count
		if prev.count > 0 && rng.IntN(4) == 0 {
			m.minCount = uint32(rng.IntN(int(prev.count)))
		}
		m.pageCount = m.minCount
		switch rng.IntN(3) {
		case 0:
			m.pageCount = max(m.minCount, prev.count) + uint32(rng.IntN(40))
		case 1:
			m.pageCount = max(m.minCount, uint32(rng.IntN(int(prev.count)+1)))
		}
		if m.pageCount > 0 {
			for range rng.IntN(12) {
				m.changeset.Add(1 + uint32(rng.IntN(int(m.pageCount))))
			}
		}
		if m.minCount < m.pageCount {
			m.changeset.AddRange(uint64(m.minCount)+1, uint64(m.pageCount)+1)
		}
		next := prev.clone()
		next.count = m.pageCount
		for p := range next.locs {
			if uint32(p) > m.pageCount {
				delete(next.locs, p)
			}
		}
		// Deal the changed pages out to up to three segments, or to none
		// (zeros); each segment groups contiguous pages into frames of up
		// to 4 pages, as a segment writer does.
		held := make([][]uint32, 1+rng.IntN(3))
		for p := range roaring.Values(m.changeset) {
			k := rng.IntN(len(held) + 1)
			if k == len(held) && rng.IntN(3) != 0 {
				k = 0
			}
			if k == len(held) {
				next.locs[PageNo(p)] = pageLoc{zero: true}
				continue
			}
			held[k] = append(held[k], p)
		}
		for _, pages := range held {
			if len(pages) == 0 {
				continue
			}
			var ref segmentRef
			for j := range ref.id {
				ref.id[j] = byte(rng.Uint32())
			}
			ref.salt = rng.Uint64() | 1
			ref.pages = roaring.BitmapOf(pages...)
			off := int64(segment.HeaderSize)
			for j := 0; j < len(pages); {
				k := j + 1
				for k < len(pages) && k-j < 4 && pages[k] == pages[k-1]+1 {
					k++
				}
				fr := segment.Frame{Offset: off, Length: uint32(5 + rng.IntN(3000)), First: PageNo(pages[j]), Last: PageNo(pages[k-1])}
				ref.frames = append(ref.frames, fr)
				for _, p := range pages[j:k] {
					next.locs[PageNo(p)] = pageLoc{seg: ref.id, offset: fr.Offset}
				}
				off = fr.End() + int64(rng.IntN(2))*100 // frames need not touch
				j = k
			}
			ref.size = off + segment.TrailerSize + int64(rng.IntN(500))
			m.segments = append(m.segments, ref)
		}
		m.changeset.RunOptimize()
		maps = append(maps, m)
		models = append(models, next)
	}
	return maps, models
}

// equalMaps reports how two maps differ, or nil.
func equalMaps(a, b *remoteMap) error {
	if a.level != b.level || a.fromSeq != b.fromSeq || a.toSeq != b.toSeq || a.parent != b.parent || a.version != b.version ||
		a.pageCount != b.pageCount || a.pageSize != b.pageSize || a.minCount != b.minCount || !a.time.Equal(b.time) {
		return fmt.Errorf("headers differ: %+v vs %+v", *a, *b)
	}
	if !a.changeset.Equals(b.changeset) {
		return fmt.Errorf("changesets differ: %v vs %v", a.changeset.ToArray(), b.changeset.ToArray())
	}
	if len(a.segments) != len(b.segments) {
		return fmt.Errorf("%d segments vs %d", len(a.segments), len(b.segments))
	}
	for i := range a.segments {
		x, y := a.segments[i], b.segments[i]
		if x.id != y.id || x.salt != y.salt || x.size != y.size || !x.pages.Equals(y.pages) || !slices.Equal(x.frames, y.frames) {
			return fmt.Errorf("segment %d differs: %+v vs %+v", i, x, y)
		}
	}
	return nil
}

func mustEncode(t testing.TB, m *remoteMap) []byte {
	t.Helper()
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRemoteMap_RoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	maps, _ := genMaps(rng, 64)
	for i, m := range maps {
		got, err := decodeRemoteMap("map", mustEncode(t, m))
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		if err := equalMaps(m, got); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	// The empty first commit of an empty volume, and a big one.
	empty := &remoteMap{toSeq: 1, version: 1, pageSize: 4096, time: time.Unix(0, 0), changeset: roaring.New()}
	if got, err := decodeRemoteMap("empty", mustEncode(t, empty)); err != nil || equalMaps(empty, got) != nil {
		t.Fatalf("empty map: %v %v", err, equalMaps(empty, got))
	}
}

// Every single-byte change and every truncation of an encoded map is
// ErrCorrupt: the CRC-32C catches any error burst of up to 32 bits, so no
// flip can decode, even to an equal map.
func TestRemoteMap_ErrCorrupt(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	maps, _ := genMaps(rng, 12)
	for i, m := range maps {
		good := mustEncode(t, m)
		for j := range good {
			for _, mask := range []byte{0x01, 0x80, 0xff, byte(1 + rng.IntN(254))} {
				bad := bytes.Clone(good)
				bad[j] ^= mask
				got, err := decodeRemoteMap("flipped", bad)
				if err == nil {
					t.Fatalf("commit %d: byte %d ^ %#x decoded (equal: %v)", i, j, mask, equalMaps(m, got))
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("commit %d: byte %d ^ %#x: %v does not wrap ErrCorrupt", i, j, mask, err)
				}
			}
		}
		for n := range len(good) {
			if _, err := decodeRemoteMap("short", good[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("commit %d truncated to %d bytes: %v", i, n, err)
			}
		}
		if _, err := decodeRemoteMap("long", append(bytes.Clone(good), 0)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("commit %d with a byte appended: %v", i, err)
		}
	}
}

// mergeTree merges maps[i:j] splitting at random points: any bracketing
// must give the same map, since merging is associative.
func mergeTree(t testing.TB, rng *rand.Rand, maps []*remoteMap) *remoteMap {
	t.Helper()
	if len(maps) == 1 {
		return maps[0]
	}
	k := 1 + rng.IntN(len(maps)-1)
	m, err := mergeMaps(mergeTree(t, rng, maps[:k]), mergeTree(t, rng, maps[k:]))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMergeMaps_Model checks merged maps against applying their commits
// one by one: for every range of commits and any bracketing of the
// merges, the merged map moves the model from the range's start to its
// end, with the union of the changesets (cut at the page count) and the
// smallest page count in between. Power-of-two ranges, which are what
// rollups are, also survive encoding.
func TestMergeMaps_Model(t *testing.T) {
	t.Parallel()
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 99))
		maps, models := genMaps(rng, 40)
		for i := 0; i < len(maps); i++ {
			for j := i + 1; j <= len(maps); j++ {
				m := mergeTree(t, rng, maps[i:j])
				where := fmt.Sprintf("seed %d, commits %d..%d", seed, i+1, j)
				if m.parent != maps[i].parent || m.version != maps[j-1].version || m.fromSeq != uint64(i) || m.toSeq != uint64(j) || m.pageCount != maps[j-1].pageCount {
					t.Fatalf("%s: merged header %+v", where, *m)
				}
				union, minCount := roaring.New(), maps[i].minCount
				for _, c := range maps[i:j] {
					union.Or(c.changeset)
					minCount = min(minCount, c.minCount)
				}
				if m.pageCount < 1<<32-1 {
					union.RemoveRange(uint64(m.pageCount)+1, 1<<32)
				}
				if !union.Equals(m.changeset) || m.minCount != minCount {
					t.Fatalf("%s: changeset %v min %d, want %v min %d", where, m.changeset.ToArray(), m.minCount, union.ToArray(), minCount)
				}
				if err := models[i].applyMap(t, m).equal(models[j]); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				if n := j - i; n&(n-1) == 0 {
					if m.level != uint8(bits.Len(uint(n))-1) {
						t.Fatalf("%s: level %d", where, m.level)
					}
					got, err := decodeRemoteMap(where, mustEncode(t, m))
					if err != nil {
						t.Fatalf("%s: merged map does not decode: %v", where, err)
					}
					if err := equalMaps(m, got); err != nil {
						t.Fatalf("%s: %v", where, err)
					}
				}
			}
		}
	}
}

func TestMergeMaps_NotAdjacent(t *testing.T) {
	t.Parallel()
	maps, _ := genMaps(rand.New(rand.NewPCG(5, 5)), 3)
	if _, err := mergeMaps(maps[0], maps[2]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("merge of commits 1 and 3: %v", err)
	}
	if _, err := mergeMaps(maps[1], maps[0]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("merge of commits 2 and 1: %v", err)
	}
}

// pieces covers exactly from+1..to, in order, with blocks aligned to
// their size, and needs at most about 2*log2(to-from) of them.
func TestPieces(t *testing.T) {
	t.Parallel()
	check := func(from, to uint64) {
		ps := pieces(from, to)
		next := from
		for _, p := range ps {
			size := uint64(1) << p.level
			if p.start != next || p.start%size != 0 || p.level > maxRollupLevel {
				t.Fatalf("pieces(%d, %d) = %v: piece %+v", from, to, ps, p)
			}
			next += size
		}
		if next != to {
			t.Fatalf("pieces(%d, %d) = %v ends at %d", from, to, ps, next)
		}
		if bound := 2*bits.Len64(to-from-1) + 2; len(ps) > bound {
			t.Fatalf("pieces(%d, %d): %d pieces, more than %d", from, to, len(ps), bound)
		}
	}
	for from := range uint64(260) {
		for to := from + 1; to <= from+600; to++ {
			check(from, to)
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for range 10000 {
		from := rng.Uint64N(1 << 41)
		check(from, from+1+rng.Uint64N(1<<(1+rng.IntN(40))))
	}
	if ps := pieces(0, 1000); len(ps) != 6 { // 512+256+128+64+32+8
		t.Fatalf("pieces(0, 1000) = %v", ps)
	}
}

// FuzzDecodeRemoteMap: arbitrary bytes decode or fail with ErrCorrupt,
// never panic; with seal set, the CRC is made right so that the parser
// behind it is reached. What decodes re-encodes to a map that decodes
// equal.
func FuzzDecodeRemoteMap(f *testing.F) {
	rng := rand.New(rand.NewPCG(11, 12))
	maps, _ := genMaps(rng, 16)
	seeds := [][]byte{}
	for _, m := range maps {
		seeds = append(seeds, mustEncode(f, m))
	}
	merged, err := mergeMaps(maps[0], maps[1])
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, mustEncode(f, merged))
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s[:len(s)-4], true)
	}
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		if seal {
			b = sealMap(b)
		}
		m, err := decodeRemoteMap("fuzz", b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if m.changeset.GetCardinality() <= 1<<16 { // a few bytes can encode a run of 2^32 pages
			for p := range roaring.Values(m.changeset) {
				m.locate(PageNo(p))
			}
		}
		again, err := decodeRemoteMap("again", mustEncode(t, m))
		if err != nil {
			t.Fatalf("a decoded map re-encodes to one that does not decode: %v", err)
		}
		if err := equalMaps(m, again); err != nil {
			t.Fatal(err)
		}
	})
}

// sealMap appends the CRC a map ends with.
func sealMap(b []byte) []byte {
	b = bytes.Clone(b)
	return append(b, sealRecord(append([]byte{}, b...))[len(b):]...)
}
