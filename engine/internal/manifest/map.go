package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/cambiumdb/cambium/segment"
)

// Map is a remote commit or rollup (see the package documentation): what
// changed over the versions Parent+1..Version, the commits FromSeq+1..ToSeq,
// and which segment frames hold the new images.
type Map struct {
	Level           uint8 // 0 for a commit, L for a rollup of 2^L commits
	FromSeq, ToSeq  uint64
	Parent, Version uint64
	PageCount       uint32 // at Version
	PageSize        uint32 // 0 for a volume that never had a page size
	MinCount        uint32 // the smallest page count over Parent..Version
	Time            time.Time
	Changeset       *roaring.Bitmap // pages whose image changed
	Segments        []SegmentRef
	// CatchUp, only on a checkpoint, and optional: when each page last
	// changed over a range of versions before it (see CatchUp).
	CatchUp *CatchUpIndex
}

// CatchUpIndex is a checkpoint's record of the pages that changed after
// version Since, up to the checkpoint's version: Pages ascending, each
// last changed at the version of the same index in Versions (Since <
// Versions[i] <= the checkpoint's version). A replica at a version v from
// Since on catches up to the checkpoint by reading the pages that changed
// after v where the checkpoint holds them, without the commits or rollups
// in between (CatchUp).
type CatchUpIndex struct {
	Since    uint64
	Pages    []uint32
	Versions []uint64
}

// SegmentRef is the part of one segment a map uses.
type SegmentRef struct {
	ID     SegmentID
	Salt   uint64 // from the segment's header; seeds its frames' CRCs
	Size   int64  // of the segment object, in bytes
	Pages  *roaring.Bitmap
	Frames []segment.Frame // ascending; those holding at least one of Pages
}

const (
	mapMagic      = "CMBM"
	mapFormat     = 1
	mapFormatZstd = 2
	// A checkpoint with a catch-up index has format 3 (body as is) or 4
	// (compressed), so that a build that predates the index says it cannot
	// read the format, rather than that the map has stray bytes.
	mapFormatIndexed     = 3
	mapFormatIndexedZstd = 4
	mapFixed             = 58
	// compressMapsFrom is the body size from which maps are compressed;
	// maxMapBody bounds a decompressed body (a map of 2^32 one-page
	// frames would be about 24 GiB; no volume has that many changed
	// pages in one map that fits in memory anyway).
	compressMapsFrom = 1 << 10
	maxMapBody       = 1 << 30
)

// MaxRollupLevel bounds rollup levels: 2^40 commits.
const MaxRollupLevel = 40

// CheckpointLevel is the level of a checkpoint: a full page map of one
// version, covering every commit from the first (FromSeq and Parent 0),
// whatever their number.
const CheckpointLevel = 0xff

// IsCheckpoint reports whether m is a full page map: every page's image at
// m.Version, not only those a range of commits changed.
func (m *Map) IsCheckpoint() bool { return m.Level == CheckpointLevel }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FrameOf returns the frame of r holding page p.
func (r *SegmentRef) FrameOf(p segment.PageNo) (segment.Frame, bool) {
	i := sort.Search(len(r.Frames), func(i int) bool { return r.Frames[i].Last >= p })
	if i == len(r.Frames) || r.Frames[i].First > p {
		return segment.Frame{}, false
	}
	return r.Frames[i], true
}

// Locate returns where page p's image lives in the map: a segment and
// frame, or zero=true for a changed page no segment holds. ok is false for
// a page the map did not change.
func (m *Map) Locate(p segment.PageNo) (ref *SegmentRef, fr segment.Frame, zero, ok bool) {
	if !m.Changeset.Contains(uint32(p)) {
		return nil, segment.Frame{}, false, false
	}
	for i := range m.Segments {
		r := &m.Segments[i]
		if r.Pages.Contains(uint32(p)) {
			fr, _ := r.FrameOf(p)
			return r, fr, false, true
		}
	}
	return nil, segment.Frame{}, true, true
}

// Encode returns the map's encoding, compressed when its body is large. It
// refuses a map that DecodeMap would refuse.
func (m *Map) Encode() ([]byte, error) {
	b, err := m.encode()
	if err != nil {
		return nil, err
	}
	// A map that would not decode is a bug of the caller's, refused here
	// rather than found by every reader of the remote.
	if _, err := DecodeMap(b); err != nil {
		return nil, fmt.Errorf("manifest: encode a map that does not hold together: %v", err)
	}
	return b, nil
}

func (m *Map) encode() ([]byte, error) {
	if m.Changeset == nil {
		return nil, errors.New("manifest: encode a map without a changeset")
	}
	for _, r := range m.Segments {
		if r.Pages == nil {
			return nil, fmt.Errorf("manifest: encode segment %s without its pages", r.ID)
		}
	}
	set, err := m.Changeset.ToBytes()
	if err != nil {
		return nil, fmt.Errorf("encode changeset: %w", err)
	}
	b := make([]byte, 0, mapFixed+len(set)+64)
	b = append(b, mapMagic...)
	b = append(b, mapFormat, m.Level)
	b = binary.BigEndian.AppendUint64(b, m.FromSeq)
	b = binary.BigEndian.AppendUint64(b, m.ToSeq)
	b = binary.BigEndian.AppendUint64(b, m.Parent)
	b = binary.BigEndian.AppendUint64(b, m.Version)
	b = binary.BigEndian.AppendUint32(b, m.PageCount)
	b = binary.BigEndian.AppendUint32(b, m.PageSize)
	b = binary.BigEndian.AppendUint32(b, m.MinCount)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time.UnixNano()))
	body := len(b)
	b = binary.AppendUvarint(b, uint64(len(set)))
	b = append(b, set...)
	b = binary.AppendUvarint(b, uint64(len(m.Segments)))
	for _, r := range m.Segments {
		b = append(b, r.ID[:]...)
		b = binary.BigEndian.AppendUint64(b, r.Salt)
		b = binary.AppendUvarint(b, uint64(r.Size))
		pages, err := r.Pages.ToBytes()
		if err != nil {
			return nil, fmt.Errorf("encode segment pages: %w", err)
		}
		b = binary.AppendUvarint(b, uint64(len(pages)))
		b = append(b, pages...)
		b = binary.AppendUvarint(b, uint64(len(r.Frames)))
		next, end := uint64(0), int64(0)
		for _, f := range r.Frames {
			b = binary.AppendUvarint(b, uint64(f.First)-next)
			b = binary.AppendUvarint(b, uint64(f.Last-f.First))
			b = binary.AppendUvarint(b, uint64(f.Offset-end))
			b = binary.AppendUvarint(b, uint64(f.Length))
			next, end = uint64(f.Last)+1, f.End()
		}
	}
	if x := m.CatchUp; x != nil {
		if !m.IsCheckpoint() || len(x.Pages) != len(x.Versions) {
			return nil, fmt.Errorf("manifest: encode a catch-up index of %d pages and %d versions on a level-%d map", len(x.Pages), len(x.Versions), m.Level)
		}
		b[4] = mapFormatIndexed
		b = binary.AppendUvarint(b, x.Since)
		b = binary.AppendUvarint(b, uint64(len(x.Pages)))
		next := uint64(0)
		for i, p := range x.Pages {
			b = binary.AppendUvarint(b, uint64(p)-next)
			b = binary.AppendUvarint(b, m.Version-x.Versions[i])
			next = uint64(p) + 1
		}
	}
	if n := len(b) - body; n >= compressMapsFrom {
		z := binary.AppendUvarint(nil, uint64(n))
		z = mapEncoder().EncodeAll(b[body:], z)
		if len(z) < n {
			b = append(b[:body], z...)
			b[4]++ // mapFormatZstd or mapFormatIndexedZstd
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

var (
	mapEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err) // only for invalid options
		}
		return e
	})
	mapDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxMapBody))
		if err != nil {
			panic(err) // only for invalid options
		}
		return d
	})
)

// mapBody returns the body of an encoded map of the given format: the
// bytes between the fixed header and the CRC, decompressed.
func mapBody(format byte, b []byte) ([]byte, error) {
	switch format {
	case mapFormat, mapFormatIndexed:
		return b, nil
	case mapFormatZstd, mapFormatIndexedZstd:
		n, k := binary.Uvarint(b)
		if k <= 0 || n > maxMapBody {
			return nil, fmt.Errorf("compressed body of unreadable length")
		}
		body, err := mapDecoder().DecodeAll(b[k:], nil)
		if err != nil {
			return nil, fmt.Errorf("compressed body: %v", err)
		}
		if uint64(len(body)) != n {
			return nil, fmt.Errorf("compressed body of %d bytes, want %d", len(body), n)
		}
		return body, nil
	}
	return nil, fmt.Errorf("format %d, this build knows %d to %d", format, mapFormat, mapFormatIndexedZstd)
}

// mapReader reads the variable part of an encoded map, remembering the
// first error.
type mapReader struct {
	b   []byte
	err error
}

func (r *mapReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("unreadable number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *mapReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%d bytes wanted, %d left", n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *mapReader) bitmap() *roaring.Bitmap {
	n := r.uvarint()
	raw := r.bytes(n)
	if r.err != nil {
		return nil
	}
	bm := roaring.New()
	if used, err := bm.ReadFrom(bytes.NewReader(raw)); err != nil || uint64(used) != n {
		r.err = fmt.Errorf("bitmap: %v", err)
		return nil
	}
	if err := bm.Validate(); err != nil {
		r.err = fmt.Errorf("bitmap: %v", err)
		return nil
	}
	return bm
}

// DecodeMap checks and decodes an encoded map. Its errors wrap ErrCorrupt;
// the caller names the object.
func DecodeMap(b []byte) (*Map, error) {
	bad := func(format string, args ...any) (*Map, error) {
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) < mapFixed+4 || string(b[:4]) != mapMagic {
		return bad("not a Cambium commit or rollup (%d bytes)", len(b))
	}
	n := len(b) - 4
	if got, want := binary.BigEndian.Uint32(b[n:]), crc32.Checksum(b[:n], castagnoli); got != want {
		return bad("checksum %08x, want %08x", got, want)
	}
	body, err := mapBody(b[4], b[mapFixed:n])
	if err != nil {
		return bad("%v", err)
	}
	m := &Map{
		Level:     b[5],
		FromSeq:   binary.BigEndian.Uint64(b[6:]),
		ToSeq:     binary.BigEndian.Uint64(b[14:]),
		Parent:    binary.BigEndian.Uint64(b[22:]),
		Version:   binary.BigEndian.Uint64(b[30:]),
		PageCount: binary.BigEndian.Uint32(b[38:]),
		PageSize:  binary.BigEndian.Uint32(b[42:]),
		MinCount:  binary.BigEndian.Uint32(b[46:]),
		Time:      time.Unix(0, int64(binary.BigEndian.Uint64(b[50:]))),
	}
	switch {
	case m.Level == CheckpointLevel:
		if m.FromSeq != 0 || m.Parent != 0 || m.MinCount != 0 || m.ToSeq == 0 {
			return bad("checkpoint of commits %d..%d from version %d, minimum page count %d", m.FromSeq+1, m.ToSeq, m.Parent, m.MinCount)
		}
	case m.Level > MaxRollupLevel || m.ToSeq-m.FromSeq != 1<<m.Level || m.ToSeq <= m.FromSeq:
		return bad("level %d covers commits %d..%d", m.Level, m.FromSeq+1, m.ToSeq)
	}
	if m.Version <= m.Parent || (m.PageSize != 0 && !segment.ValidPageSize(int(m.PageSize))) || m.MinCount > m.PageCount {
		return bad("versions %d..%d, page size %d, page counts %d..%d", m.Parent, m.Version, m.PageSize, m.MinCount, m.PageCount)
	}
	r := &mapReader{b: body}
	m.Changeset = r.bitmap()
	nseg := r.uvarint()
	if r.err == nil && nseg > uint64(len(r.b)) {
		return bad("%d segments in %d bytes", nseg, len(r.b))
	}
	located := roaring.New()
	for i := uint64(0); i < nseg && r.err == nil; i++ {
		var ref SegmentRef
		copy(ref.ID[:], r.bytes(segmentIDLen))
		if raw := r.bytes(8); raw != nil {
			ref.Salt = binary.BigEndian.Uint64(raw)
		}
		ref.Size = int64(r.uvarint())
		ref.Pages = r.bitmap()
		nf := r.uvarint()
		if r.err != nil {
			break
		}
		if nf > uint64(len(r.b)) || ref.Size < segment.HeaderSize+segment.TrailerSize || ref.Size > 1<<40 {
			return bad("segment %s: %d frames, size %d", ref.ID, nf, ref.Size)
		}
		next, end := uint64(0), int64(0)
		for j := uint64(0); j < nf && r.err == nil; j++ {
			dFirst, dCount, dOff, length := r.uvarint(), r.uvarint(), r.uvarint(), r.uvarint()
			if r.err != nil {
				break
			}
			// Deltas so large that a sum would wrap are refused here:
			// frames ascend, and do not overlap.
			if dFirst > 1<<32 || dCount >= segment.MaxFrameBytes/segment.MinPageSize || dOff > uint64(ref.Size) {
				return bad("segment %s frame %d: deltas %d, %d, %d", ref.ID, j, dFirst, dCount, dOff)
			}
			first, count, off := next+dFirst, dCount+1, end+int64(dOff)
			last := first + count - 1
			// A frame may reach past the page count: a rollup keeps the
			// frames of pages a later truncation left, and a frame can
			// also hold pages it cut off.
			if first == 0 || last > 1<<32-1 || count > segment.MaxFrameBytes/segment.MinPageSize ||
				off < segment.HeaderSize || length <= segment.FrameTrailerSize || length > segment.MaxFrameBytes*2 ||
				off+int64(length) > ref.Size {
				return bad("segment %s frame %d: pages %d..%d at %d+%d", ref.ID, j, first, last, off, length)
			}
			fr := segment.Frame{Offset: off, Length: uint32(length), First: segment.PageNo(first), Last: segment.PageNo(last)}
			ref.Frames = append(ref.Frames, fr)
			next, end = last+1, fr.End()
		}
		if r.err != nil {
			break
		}
		if !ref.Pages.IsEmpty() && !roaring.And(ref.Pages, m.Changeset).Equals(ref.Pages) {
			return bad("segment %s holds pages outside the changeset", ref.ID)
		}
		if located.Intersects(ref.Pages) {
			return bad("segment %s holds pages another segment holds", ref.ID)
		}
		for p := range roaring.Values(ref.Pages) {
			if _, ok := ref.FrameOf(segment.PageNo(p)); !ok {
				return bad("segment %s: page %d is in no frame", ref.ID, p)
			}
		}
		located.Or(ref.Pages)
		m.Segments = append(m.Segments, ref)
	}
	if r.err == nil && (b[4] == mapFormatIndexed || b[4] == mapFormatIndexedZstd) {
		if !m.IsCheckpoint() {
			return bad("a catch-up index on a level-%d map", m.Level)
		}
		x := &CatchUpIndex{Since: r.uvarint()}
		n := r.uvarint()
		if r.err == nil && (x.Since >= m.Version || n > uint64(m.PageCount) || n > uint64(len(r.b))) {
			return bad("catch-up index of %d pages since version %d, at version %d of %d pages", n, x.Since, m.Version, m.PageCount)
		}
		next := uint64(0)
		for i := uint64(0); i < n && r.err == nil; i++ {
			dp, dv := r.uvarint(), r.uvarint()
			p := next + dp
			if r.err != nil {
				break
			}
			if dp > uint64(m.PageCount) || p == 0 || p > uint64(m.PageCount) || dv >= m.Version-x.Since {
				return bad("catch-up index entry %d: page %d (of %d) changed at version %d - %d, since %d", i, p, m.PageCount, m.Version, dv, x.Since)
			}
			x.Pages = append(x.Pages, uint32(p))
			x.Versions = append(x.Versions, m.Version-dv)
			next = p + 1
		}
		m.CatchUp = x
	}
	if r.err != nil {
		return bad("%v", r.err)
	}
	if len(r.b) != 0 {
		return bad("%d stray bytes", len(r.b))
	}
	if !m.Changeset.IsEmpty() && m.Changeset.Maximum() > m.PageCount {
		return bad("changeset reaches page %d of %d", m.Changeset.Maximum(), m.PageCount)
	}
	if m.MinCount < m.PageCount && uint64(m.Changeset.Rank(m.PageCount)-m.Changeset.Rank(m.MinCount)) != uint64(m.PageCount-m.MinCount) {
		return bad("pages %d..%d changed by truncation are not all in the changeset", m.MinCount+1, m.PageCount)
	}
	return m, nil
}

// Rewrites reports whether m rewrote every page of its version: a minimum
// page count of 0 (DecodeMap checks that pages above the minimum count are
// all in the changeset). Only such a map may change the page size: it
// leaves no image of the old size at its version.
func (m *Map) Rewrites() bool { return m.MinCount == 0 }

// Merge returns the map of older followed by newer, which must be adjacent
// (older.Version == newer.Parent, older.ToSeq == newer.FromSeq); maps that
// are not are ErrCorrupt, and so is a newer map of another page size that
// does not rewrite every page (Rewrites). Its level is that of a rollup when it covers a
// power of two of commits, and CheckpointLevel when older is a checkpoint.
// It may share segment references with newer.
func Merge(older, newer *Map) (*Map, error) {
	if older.Version != newer.Parent || older.ToSeq != newer.FromSeq {
		return nil, fmt.Errorf("%w: merge maps of versions %d..%d and %d..%d (commits %d..%d and %d..%d): not adjacent",
			ErrCorrupt, older.Parent, older.Version, newer.Parent, newer.Version, older.FromSeq+1, older.ToSeq, newer.FromSeq+1, newer.ToSeq)
	}
	resized := older.PageSize != 0 && newer.PageSize != 0 && older.PageSize != newer.PageSize
	if resized && !newer.Rewrites() {
		return nil, fmt.Errorf("%w: page size changes from %d to %d at version %d without a rewrite of every page", ErrCorrupt, older.PageSize, newer.PageSize, newer.Parent)
	}
	m := &Map{
		FromSeq:   older.FromSeq,
		ToSeq:     newer.ToSeq,
		Parent:    older.Parent,
		Version:   newer.Version,
		PageCount: newer.PageCount,
		PageSize:  newer.PageSize,
		MinCount:  min(older.MinCount, newer.MinCount),
		Time:      newer.Time,
		Changeset: roaring.Or(older.Changeset, newer.Changeset),
	}
	if l := m.ToSeq - m.FromSeq; older.IsCheckpoint() {
		m.Level = CheckpointLevel
	} else if l&(l-1) == 0 {
		m.Level = uint8(bits.Len64(l) - 1)
	}
	if n := uint64(m.PageCount); n < 1<<32-1 {
		m.Changeset.RemoveRange(n+1, 1<<32)
	}
	m.Changeset.RunOptimize()
	if m.PageSize == 0 {
		m.PageSize = older.PageSize
	}
	for _, r := range older.Segments {
		if resized {
			break // of the old size, and newer replaced every page anyway
		}
		pages := roaring.AndNot(r.Pages, newer.Changeset)
		if n := uint64(m.PageCount); n < 1<<32-1 {
			pages.RemoveRange(n+1, 1<<32)
		}
		if pages.IsEmpty() {
			continue
		}
		pages.RunOptimize()
		m.Segments = append(m.Segments, SegmentRef{ID: r.ID, Salt: r.Salt, Size: r.Size, Pages: pages, Frames: framesHolding(r.Frames, pages)})
	}
	m.Segments = append(m.Segments, newer.Segments...)
	return m, nil
}

// framesHolding returns the frames that hold at least one of pages.
func framesHolding(frames []segment.Frame, pages *roaring.Bitmap) []segment.Frame {
	var out []segment.Frame
	for _, f := range frames {
		if pages.IntersectsWithInterval(uint64(f.First), uint64(f.Last)+1) {
			out = append(out, f)
		}
	}
	return slices.Clip(out)
}

// Piece is one map a reader reads: a rollup of level Level covering the
// commits Start+1..Start+2^Level, or (level 0) the one commit Start+1.
type Piece struct {
	Level uint8
	Start uint64
}

// Pieces splits the commits from+1..to into aligned rollups, largest first
// where alignment allows: at most 2*log2(to-from) of them.
func Pieces(from, to uint64) []Piece {
	var out []Piece
	for t := from; t < to; {
		l := uint8(0)
		for l < MaxRollupLevel {
			size := uint64(1) << (l + 1)
			if t%size != 0 || t+size > to {
				break
			}
			l++
		}
		out = append(out, Piece{Level: l, Start: t})
		t += 1 << l
	}
	return out
}

// Repoint returns a copy of map m in which the pages of pages take their
// images from checkpoint full: for pages whose image is the same in both
// (they did not change between m's version and full's), so that m can use
// full's segments instead of its own. Pages full holds in no segment are
// zeros in the result too.
func Repoint(m, full *Map, pages *roaring.Bitmap) (*Map, error) {
	if !full.IsCheckpoint() || full.Version < m.Version || full.PageSize != m.PageSize {
		return nil, fmt.Errorf("%w: repoint the map of version %d to the map of version %d (level %d, page size %d, want %d)",
			ErrCorrupt, m.Version, full.Version, full.Level, full.PageSize, m.PageSize)
	}
	out := *m
	out.Segments = nil
	for _, r := range m.Segments {
		if kept := roaring.AndNot(r.Pages, pages); !kept.IsEmpty() {
			kept.RunOptimize()
			out.Segments = append(out.Segments, SegmentRef{ID: r.ID, Salt: r.Salt, Size: r.Size, Pages: kept, Frames: framesHolding(r.Frames, kept)})
		}
	}
	for _, r := range full.Segments {
		if taken := roaring.And(r.Pages, pages); !taken.IsEmpty() {
			taken.RunOptimize()
			out.Segments = append(out.Segments, SegmentRef{ID: r.ID, Salt: r.Salt, Size: r.Size, Pages: taken, Frames: framesHolding(r.Frames, taken)})
		}
	}
	return &out, nil
}

// CatchUp returns the map of the versions from+1..k.Version (the commits
// fromSeq+1..k.ToSeq) read through checkpoint k's catch-up index: the
// pages that changed after version from, located where k holds them. It
// is what the commits and rollups of that range would merge into, for a
// reader that has version from (fromCount pages of fromSize bytes) and
// only needs to know what changed since and where it lives now. ok is
// false when k cannot serve a catch-up from there: it has no index, its
// index starts after from, the page size differs, or its index does not
// hold together with the page counts.
func CatchUp(k *Map, from, fromSeq uint64, fromCount, fromSize uint32) (m *Map, ok bool) {
	x := k.CatchUp
	if x == nil || !k.IsCheckpoint() || x.Since > from || from >= k.Version || fromSeq >= k.ToSeq ||
		(fromSize != 0 && fromSize != k.PageSize) {
		return nil, false
	}
	changed := roaring.New()
	for i, p := range x.Pages {
		if x.Versions[i] > from {
			changed.Add(p)
		}
	}
	m = &Map{
		FromSeq:   fromSeq,
		ToSeq:     k.ToSeq,
		Parent:    from,
		Version:   k.Version,
		PageCount: k.PageCount,
		PageSize:  k.PageSize,
		MinCount:  min(fromCount, k.PageCount),
		Time:      k.Time,
		Changeset: changed,
	}
	if fromSize == 0 {
		m.MinCount = 0
	}
	// Every page past the smaller page count was written after from: a
	// page the volume grew by, or cut off and grew again.
	if n := m.PageCount - m.MinCount; n > 0 && changed.Rank(m.PageCount)-changed.Rank(m.MinCount) != uint64(n) {
		return nil, false
	}
	if l := m.ToSeq - m.FromSeq; l&(l-1) == 0 {
		m.Level = uint8(bits.Len64(l) - 1)
	}
	changed.RunOptimize()
	for _, r := range k.Segments {
		if taken := roaring.And(r.Pages, changed); !taken.IsEmpty() {
			taken.RunOptimize()
			m.Segments = append(m.Segments, SegmentRef{ID: r.ID, Salt: r.Salt, Size: r.Size, Pages: taken, Frames: framesHolding(r.Frames, taken)})
		}
	}
	return m, true
}
