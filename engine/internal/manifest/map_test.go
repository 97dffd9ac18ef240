package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
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
	locs  map[segment.PageNo]pageLoc
}

func (m mapModel) clone() mapModel {
	c := mapModel{count: m.count, locs: make(map[segment.PageNo]pageLoc, len(m.locs))}
	for p, l := range m.locs {
		c.locs[p] = l
	}
	return c
}

// applyMap moves the model over map m, reading locations through
// m.Locate, which is what a pull does.
func (m mapModel) applyMap(t testing.TB, rm *Map) mapModel {
	t.Helper()
	out := m.clone()
	out.count = rm.PageCount
	for p := range out.locs {
		if uint32(p) > rm.PageCount {
			delete(out.locs, p)
		}
	}
	for p := range roaring.Values(rm.Changeset) {
		ref, fr, zero, ok := rm.Locate(segment.PageNo(p))
		if !ok {
			t.Fatalf("page %d is in the changeset, locate says unchanged", p)
		}
		if zero {
			out.locs[segment.PageNo(p)] = pageLoc{zero: true}
			continue
		}
		if fr.First > segment.PageNo(p) || fr.Last < segment.PageNo(p) || fr.Length == 0 {
			t.Fatalf("page %d located in frame %+v", p, fr)
		}
		out.locs[segment.PageNo(p)] = pageLoc{seg: ref.ID, offset: fr.Offset}
	}
	return out
}

func (m mapModel) equal(o mapModel) error {
	if m.count != o.count {
		return fmt.Errorf("%d pages, want %d", m.count, o.count)
	}
	for p := segment.PageNo(1); uint32(p) <= m.count; p++ {
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
func genMaps(rng *rand.Rand, n int) ([]*Map, []mapModel) {
	models := []mapModel{{locs: map[segment.PageNo]pageLoc{}}}
	var maps []*Map
	ver := uint64(0)
	for i := range n {
		prev := models[len(models)-1]
		m := &Map{
			FromSeq:   uint64(i),
			ToSeq:     uint64(i + 1),
			Parent:    ver,
			Version:   ver + 1 + uint64(rng.IntN(3)),
			PageSize:  512,
			Time:      time.Unix(0, int64(i)*1e9),
			Changeset: roaring.New(),
		}
		ver = m.Version
		m.MinCount = prev.count
		if prev.count > 0 && rng.IntN(4) == 0 {
			m.MinCount = uint32(rng.IntN(int(prev.count)))
		}
		m.PageCount = m.MinCount
		switch rng.IntN(3) {
		case 0:
			m.PageCount = max(m.MinCount, prev.count) + uint32(rng.IntN(40))
		case 1:
			m.PageCount = max(m.MinCount, uint32(rng.IntN(int(prev.count)+1)))
		}
		if m.PageCount > 0 {
			for range rng.IntN(12) {
				m.Changeset.Add(1 + uint32(rng.IntN(int(m.PageCount))))
			}
		}
		if m.MinCount < m.PageCount {
			m.Changeset.AddRange(uint64(m.MinCount)+1, uint64(m.PageCount)+1)
		}
		next := prev.clone()
		next.count = m.PageCount
		for p := range next.locs {
			if uint32(p) > m.PageCount {
				delete(next.locs, p)
			}
		}
		// Deal the changed pages out to up to three segments, or to none
		// (zeros); each segment groups contiguous pages into frames of up
		// to 4 pages, as a segment writer does.
		held := make([][]uint32, 1+rng.IntN(3))
		for p := range roaring.Values(m.Changeset) {
			k := rng.IntN(len(held) + 1)
			if k == len(held) && rng.IntN(3) != 0 {
				k = 0
			}
			if k == len(held) {
				next.locs[segment.PageNo(p)] = pageLoc{zero: true}
				continue
			}
			held[k] = append(held[k], p)
		}
		for _, pages := range held {
			if len(pages) == 0 {
				continue
			}
			var ref SegmentRef
			for j := range ref.ID {
				ref.ID[j] = byte(rng.Uint32())
			}
			ref.Salt = rng.Uint64() | 1
			ref.Pages = roaring.BitmapOf(pages...)
			off := int64(segment.HeaderSize)
			for j := 0; j < len(pages); {
				k := j + 1
				for k < len(pages) && k-j < 4 && pages[k] == pages[k-1]+1 {
					k++
				}
				fr := segment.Frame{Offset: off, Length: uint32(5 + rng.IntN(3000)), First: segment.PageNo(pages[j]), Last: segment.PageNo(pages[k-1])}
				ref.Frames = append(ref.Frames, fr)
				for _, p := range pages[j:k] {
					next.locs[segment.PageNo(p)] = pageLoc{seg: ref.ID, offset: fr.Offset}
				}
				off = fr.End() + int64(rng.IntN(2))*100 // frames need not touch
				j = k
			}
			ref.Size = off + segment.TrailerSize + int64(rng.IntN(500))
			m.Segments = append(m.Segments, ref)
		}
		m.Changeset.RunOptimize()
		maps = append(maps, m)
		models = append(models, next)
	}
	return maps, models
}

// equalMaps reports how two maps differ, or nil.
func equalMaps(a, b *Map) error {
	if a.Level != b.Level || a.FromSeq != b.FromSeq || a.ToSeq != b.ToSeq || a.Parent != b.Parent || a.Version != b.Version ||
		a.PageCount != b.PageCount || a.PageSize != b.PageSize || a.MinCount != b.MinCount || !a.Time.Equal(b.Time) {
		return fmt.Errorf("headers differ: %+v vs %+v", *a, *b)
	}
	if !a.Changeset.Equals(b.Changeset) {
		return fmt.Errorf("changesets differ: %v vs %v", a.Changeset.ToArray(), b.Changeset.ToArray())
	}
	if len(a.Segments) != len(b.Segments) {
		return fmt.Errorf("%d segments vs %d", len(a.Segments), len(b.Segments))
	}
	for i := range a.Segments {
		x, y := a.Segments[i], b.Segments[i]
		if x.ID != y.ID || x.Salt != y.Salt || x.Size != y.Size || !x.Pages.Equals(y.Pages) || !slices.Equal(x.Frames, y.Frames) {
			return fmt.Errorf("segment %d differs: %+v vs %+v", i, x, y)
		}
	}
	return nil
}

func mustEncode(t testing.TB, m *Map) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMap_RoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	maps, _ := genMaps(rng, 64)
	for i, m := range maps {
		got, err := DecodeMap(mustEncode(t, m))
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		if err := equalMaps(m, got); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	// The empty first commit of an empty volume, and a big one.
	empty := &Map{ToSeq: 1, Version: 1, PageSize: 4096, Time: time.Unix(0, 0), Changeset: roaring.New()}
	if got, err := DecodeMap(mustEncode(t, empty)); err != nil || equalMaps(empty, got) != nil {
		t.Fatalf("empty map: %v %v", err, equalMaps(empty, got))
	}
}

// Every single-byte change and every truncation of an encoded map is
// ErrCorrupt: the CRC-32C catches any error burst of up to 32 bits, so no
// flip can decode, even to an equal map.
func TestDecodeMap_ErrCorrupt(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	maps, _ := genMaps(rng, 12)
	for i, m := range maps {
		good := mustEncode(t, m)
		for j := range good {
			for _, mask := range []byte{0x01, 0x80, 0xff, byte(1 + rng.IntN(254))} {
				bad := bytes.Clone(good)
				bad[j] ^= mask
				got, err := DecodeMap(bad)
				if err == nil {
					t.Fatalf("commit %d: byte %d ^ %#x decoded (equal: %v)", i, j, mask, equalMaps(m, got))
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("commit %d: byte %d ^ %#x: %v does not wrap ErrCorrupt", i, j, mask, err)
				}
			}
		}
		for n := range len(good) {
			if _, err := DecodeMap(good[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("commit %d truncated to %d bytes: %v", i, n, err)
			}
		}
		if _, err := DecodeMap(append(bytes.Clone(good), 0)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("commit %d with a byte appended: %v", i, err)
		}
	}
}

// mergeTree merges maps[i:j] splitting at random points: any bracketing
// must give the same map, since merging is associative.
func mergeTree(t testing.TB, rng *rand.Rand, maps []*Map) *Map {
	t.Helper()
	if len(maps) == 1 {
		return maps[0]
	}
	k := 1 + rng.IntN(len(maps)-1)
	m, err := Merge(mergeTree(t, rng, maps[:k]), mergeTree(t, rng, maps[k:]))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMerge_Model checks merged maps against applying their commits
// one by one: for every range of commits and any bracketing of the
// merges, the merged map moves the model from the range's start to its
// end, with the union of the changesets (cut at the page count) and the
// smallest page count in between. Power-of-two ranges, which are what
// rollups are, also survive encoding.
func TestMerge_Model(t *testing.T) {
	t.Parallel()
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 99))
		maps, models := genMaps(rng, 40)
		for i := 0; i < len(maps); i++ {
			for j := i + 1; j <= len(maps); j++ {
				m := mergeTree(t, rng, maps[i:j])
				where := fmt.Sprintf("seed %d, commits %d..%d", seed, i+1, j)
				if m.Parent != maps[i].Parent || m.Version != maps[j-1].Version || m.FromSeq != uint64(i) || m.ToSeq != uint64(j) || m.PageCount != maps[j-1].PageCount {
					t.Fatalf("%s: merged header %+v", where, *m)
				}
				union, minCount := roaring.New(), maps[i].MinCount
				for _, c := range maps[i:j] {
					union.Or(c.Changeset)
					minCount = min(minCount, c.MinCount)
				}
				if m.PageCount < 1<<32-1 {
					union.RemoveRange(uint64(m.PageCount)+1, 1<<32)
				}
				if !union.Equals(m.Changeset) || m.MinCount != minCount {
					t.Fatalf("%s: changeset %v min %d, want %v min %d", where, m.Changeset.ToArray(), m.MinCount, union.ToArray(), minCount)
				}
				if err := models[i].applyMap(t, m).equal(models[j]); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				if n := j - i; n&(n-1) == 0 {
					if m.Level != uint8(bits.Len(uint(n))-1) {
						t.Fatalf("%s: level %d", where, m.Level)
					}
					got, err := DecodeMap(mustEncode(t, m))
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

func TestMerge_NotAdjacent(t *testing.T) {
	t.Parallel()
	maps, _ := genMaps(rand.New(rand.NewPCG(5, 5)), 3)
	if _, err := Merge(maps[0], maps[2]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("merge of commits 1 and 3: %v", err)
	}
	if _, err := Merge(maps[1], maps[0]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("merge of commits 2 and 1: %v", err)
	}
}

// TestMerge_PageSize: a map of another page size merges only when it
// rewrote every page (minimum count 0); the result has the new size and
// none of the older map's segments, whose pages are of the old size.
func TestMerge_PageSize(t *testing.T) {
	t.Parallel()
	maps, _ := genMaps(rand.New(rand.NewPCG(6, 6)), 2)
	older, newer := maps[0], *maps[1]
	newer.PageSize = 4096
	if _, err := Merge(older, &newer); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("merge of a size change that keeps pages: %v, want ErrCorrupt", err)
	}
	newer.PageCount, newer.MinCount = 7, 0
	newer.Changeset = roaring.New()
	newer.Changeset.AddRange(1, 8)
	newer.Segments = []SegmentRef{{ID: SegmentID{1}, Salt: 3, Size: 900, Pages: roaring.BitmapOf(1, 2, 3, 4, 5, 6, 7),
		Frames: []segment.Frame{{Offset: segment.HeaderSize, Length: 100, First: 1, Last: 7}}}}
	if !newer.Rewrites() {
		t.Fatalf("Rewrites: %v", newer.Rewrites())
	}
	m, err := Merge(older, &newer)
	if err != nil {
		t.Fatal(err)
	}
	if m.PageSize != 4096 || m.MinCount != 0 || m.PageCount != 7 || len(m.Segments) != 1 || m.Segments[0].ID != newer.Segments[0].ID {
		t.Fatalf("merged: page size %d, minimum count %d, %d pages, segments %v", m.PageSize, m.MinCount, m.PageCount, m.Segments)
	}
	if _, err := DecodeMap(mustEncode(t, m)); err != nil {
		t.Fatalf("merged map does not decode: %v", err)
	}
}

// pieces covers exactly from+1..to, in order, with blocks aligned to
// their size, and needs at most about 2*log2(to-from) of them.
func TestPieces(t *testing.T) {
	t.Parallel()
	check := func(from, to uint64) {
		ps := Pieces(from, to)
		next := from
		for _, p := range ps {
			size := uint64(1) << p.Level
			if p.Start != next || p.Start%size != 0 || p.Level > MaxRollupLevel {
				t.Fatalf("Pieces(%d, %d) = %v: piece %+v", from, to, ps, p)
			}
			next += size
		}
		if next != to {
			t.Fatalf("Pieces(%d, %d) = %v ends at %d", from, to, ps, next)
		}
		if bound := 2*bits.Len64(to-from-1) + 2; len(ps) > bound {
			t.Fatalf("Pieces(%d, %d): %d pieces, more than %d", from, to, len(ps), bound)
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
	if ps := Pieces(0, 1000); len(ps) != 6 { // 512+256+128+64+32+8
		t.Fatalf("Pieces(0, 1000) = %v", ps)
	}
}

// FuzzDecodeMap: arbitrary bytes decode or fail with ErrCorrupt,
// never panic; with seal set, the CRC is made right so that the parser
// behind it is reached. What decodes re-encodes to a map that decodes
// equal.
func FuzzDecodeMap(f *testing.F) {
	rng := rand.New(rand.NewPCG(11, 12))
	maps, _ := genMaps(rng, 16)
	seeds := [][]byte{}
	for _, m := range maps {
		seeds = append(seeds, mustEncode(f, m))
	}
	merged, err := Merge(maps[0], maps[1])
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, mustEncode(f, merged))
	// A checkpoint with a catch-up index.
	k := maps[0]
	for _, m := range maps[1:] {
		if k, err = Merge(k, m); err != nil {
			f.Fatal(err)
		}
	}
	k.Level = CheckpointLevel
	k.CatchUp = catchUpIndex(k, maps[3].Version, maps[4:])
	seeds = append(seeds, mustEncode(f, k))
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s[:len(s)-4], true)
	}
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		if seal {
			b = sealMap(b)
		}
		m, err := DecodeMap(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		for _, ref := range m.Segments {
			for j := 1; j < len(ref.Frames); j++ {
				if prev, fr := ref.Frames[j-1], ref.Frames[j]; fr.First <= prev.Last || fr.Offset < prev.End() {
					t.Fatalf("segment %s: frame %d (pages %d..%d at %d) does not follow frame %d (pages %d..%d at %d+%d)",
						ref.ID, j, fr.First, fr.Last, fr.Offset, j-1, prev.First, prev.Last, prev.Offset, prev.Length)
				}
			}
		}
		if m.Changeset.GetCardinality() <= 1<<16 { // a few bytes can encode a run of 2^32 pages
			for p := range roaring.Values(m.Changeset) {
				m.Locate(segment.PageNo(p))
			}
		}
		again, err := DecodeMap(mustEncode(t, m))
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
	return binary.BigEndian.AppendUint32(bytes.Clone(b), crc32.Checksum(b, castagnoli))
}

// TestEncode_Refuses: a map that would not decode is not encoded.
func TestEncode_Refuses(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	maps, _ := genMaps(rng, 3)
	for _, tc := range []struct {
		name   string
		mutate func(m *Map)
	}{
		{"NoChangeset", func(m *Map) { m.Changeset = nil }},
		{"Level0OfThreeCommits", func(m *Map) { m.Level, m.FromSeq, m.ToSeq = 0, 0, 3 }},
		{"SeqsBackwards", func(m *Map) { m.FromSeq, m.ToSeq = 5, 4 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := *maps[0]
			tc.mutate(&m)
			if b, err := m.Encode(); err == nil {
				t.Fatalf("encoded %d bytes", len(b))
			}
		})
	}
}

// catchUpIndex is the index a collector writes: for the pages of checkpoint
// k, when each last changed over maps (the commits after version since).
func catchUpIndex(k *Map, since uint64, maps []*Map) *CatchUpIndex {
	last := map[uint32]uint64{}
	for _, m := range maps {
		for p := range roaring.Values(m.Changeset) {
			last[p] = m.Version
		}
	}
	x := &CatchUpIndex{Since: since}
	for p := uint32(1); p <= k.PageCount; p++ {
		if v, ok := last[p]; ok {
			x.Pages, x.Versions = append(x.Pages, p), append(x.Versions, v)
		}
	}
	return x
}

// A reader at any version from the index's start catches up to the
// checkpoint through its index to exactly the state the commits in between
// would give it; before the start, or at another page size, it cannot.
// The index survives encoding.
func TestCatchUp_Model(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 77))
		n := 10 + rng.IntN(30)
		maps, models := genMaps(rng, n)
		k := maps[0]
		for _, m := range maps[1:] {
			var err error
			if k, err = Merge(k, m); err != nil {
				t.Fatal(err)
			}
		}
		k.Level = CheckpointLevel
		j := rng.IntN(n - 1) // the index starts at the version after commit j
		k.CatchUp = catchUpIndex(k, maps[j].Version, maps[j+1:])
		got, err := DecodeMap(mustEncode(t, k))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err := equalMaps(k, got); err != nil || !reflect.DeepEqual(k.CatchUp, got.CatchUp) {
			t.Fatalf("seed %d: the checkpoint read back differs: %v; index %+v, want %+v", seed, err, got.CatchUp, k.CatchUp)
		}
		for i := range n {
			from := maps[i].Version // models[i+1] is the state there
			m, ok := CatchUp(got, from, maps[i].ToSeq, models[i+1].count, 512)
			switch {
			case i < j:
				if ok {
					t.Fatalf("seed %d: caught up from version %d, before the index's start %d", seed, from, maps[j].Version)
				}
				continue
			case i == n-1:
				if ok {
					t.Fatalf("seed %d: caught up from the checkpoint's own version", seed)
				}
				continue
			case !ok:
				t.Fatalf("seed %d: cannot catch up from version %d (index from %d)", seed, from, maps[j].Version)
			}
			if m.Parent != from || m.Version != k.Version || m.FromSeq != maps[i].ToSeq || m.ToSeq != k.ToSeq {
				t.Fatalf("seed %d: catch-up map of versions %d..%d, commits %d..%d", seed, m.Parent, m.Version, m.FromSeq+1, m.ToSeq)
			}
			if err := models[i+1].applyMap(t, m).equal(models[n]); err != nil {
				t.Fatalf("seed %d: caught up from version %d: %v", seed, from, err)
			}
			if _, ok := CatchUp(got, from, maps[i].ToSeq, models[i+1].count, 4096); ok && models[i+1].count > 0 {
				t.Fatalf("seed %d: caught up across a page size change", seed)
			}
		}
	}
}

// An index that does not hold together is refused by the decoder.
func TestDecodeMap_BadCatchUp(t *testing.T) {
	t.Parallel()
	k := &Map{Level: CheckpointLevel, ToSeq: 5, Version: 9, PageCount: 4, PageSize: 512, Time: time.Unix(0, 0), Changeset: roaring.New()}
	k.Changeset.AddRange(1, 5)
	for name, x := range map[string]CatchUpIndex{
		"page 0":              {Since: 3, Pages: []uint32{0}, Versions: []uint64{5}},
		"page past count":     {Since: 3, Pages: []uint32{5}, Versions: []uint64{5}},
		"pages not ascending": {Since: 3, Pages: []uint32{2, 2}, Versions: []uint64{5, 6}},
		"version at since":    {Since: 3, Pages: []uint32{1}, Versions: []uint64{3}},
		"since at version":    {Since: 9, Pages: nil, Versions: nil},
	} {
		k.CatchUp = &x
		if _, err := k.Encode(); err == nil || !strings.Contains(err.Error(), "does not hold together") {
			t.Errorf("%s: encoded (%v)", name, err)
		}
	}
	commit := &Map{ToSeq: 1, Version: 1, PageSize: 512, Time: time.Unix(0, 0), Changeset: roaring.New(), CatchUp: &CatchUpIndex{}}
	if _, err := commit.Encode(); err == nil {
		t.Error("encoded a catch-up index on a commit")
	}
}
