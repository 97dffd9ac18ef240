package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/cambiumdb/cambium/segment"
)

// A remote map says what changed over a range of a volume's versions and
// where the new page images live. Remote commit records and rollups are
// both maps: a commit covers one push, (parent, version]; a rollup of level
// L covers 2^L consecutive commits, by their sequence numbers, and is the
// merge of their maps. A map from version 0 is a full page map: a
// checkpoint.
//
// Sequence numbers count a volume's remote commits: the commit with parent
// 0 is number 1, its successor 2, and so on. A map covers the commits
// fromSeq+1..toSeq; rollups of level L start at multiples of 2^L, so any
// range of commits splits into at most 2*log2(k) rollups (see pieces).
//
// Encoding, big-endian:
//
//	offset  size  field
//	0       4     magic "CMBM"
//	4       1     format: 1, the body (from offset 58 to the CRC) as is;
//	              2, the body zstd-compressed: uvarint length of the
//	              body, then one zstd frame holding it
//	5       1     level: 0 for a commit, L for a rollup of 2^L commits
//	6       8     fromSeq
//	14      8     toSeq
//	22      8     parent version
//	30      8     version
//	38      4     page count at version
//	42      4     page size
//	46      4     minimum page count over parent..version
//	50      8     time of the newest commit, unix nanoseconds
//	58      ...   changeset: uvarint length, roaring bitmap (portable)
//	        ...   segment count (uvarint), then per segment:
//	                16     segment ID
//	                8      salt (from the segment's header)
//	                uvarint segment size in bytes
//	                uvarint length, roaring bitmap: the pages this map takes
//	                       from the segment (a subset of the changeset)
//	                uvarint frame count, then per frame, ascending:
//	                       uvarint first page - (previous frame's last page + 1)
//	                       uvarint page count - 1
//	                       uvarint offset - previous frame's end (0 first)
//	                       uvarint length including the frame's CRC
//	end-4   4     CRC-32C of every byte before it
//
// Encoders compress bodies of 1 KiB or more (format 2): a large map is
// mostly its frame table, whose entries are alike (frames of one page,
// back to back), so compression cuts the full page map a cold replica
// reads on open by about three quarters. Decoders read both formats.
//
// Every page from minimum page count + 1 to the page count is in the
// changeset (a truncation followed by growth changes pages even where
// nothing was written), so applying a map needs nothing but the map.
// Changeset pages that no segment holds are zeros. Frames listed are those
// holding at least one of the segment's pages in this map; a frame's CRC is
// seeded with the segment's salt, so a frame read at the wrong offset or
// from the wrong object fails its check.
type remoteMap struct {
	level           uint8
	fromSeq, toSeq  uint64
	parent, version Version
	pageCount       uint32
	pageSize        uint32
	minCount        uint32
	time            time.Time
	changeset       *roaring.Bitmap
	segments        []segmentRef
}

// segmentRef is the part of one segment a map uses.
type segmentRef struct {
	id     SegmentID
	salt   uint64
	size   int64
	pages  *roaring.Bitmap
	frames []segment.Frame
}

const (
	remoteMapMagic      = "CMBM"
	remoteMapFormat     = 1
	remoteMapFormatZstd = 2
	remoteMapFixed      = 58
	// compressMapsFrom is the body size from which maps are compressed;
	// maxMapBody bounds a decompressed body (a map of 2^32 one-page
	// frames would be about 24 GiB; no volume has that many changed
	// pages in one map that fits in memory anyway).
	compressMapsFrom = 1 << 10
	maxMapBody       = 1 << 30
	// maxRollupLevel bounds rollup levels: 2^40 commits.
	maxRollupLevel = 40
)

// frameOf returns the frame of ref holding page p.
func (r *segmentRef) frameOf(p PageNo) (segment.Frame, bool) {
	i := sort.Search(len(r.frames), func(i int) bool { return r.frames[i].Last >= p })
	if i == len(r.frames) || r.frames[i].First > p {
		return segment.Frame{}, false
	}
	return r.frames[i], true
}

// locate returns where page p's image lives in the map: a segment and
// frame, or zero=true for a changed page no segment holds. ok is false for
// a page the map did not change.
func (m *remoteMap) locate(p PageNo) (ref *segmentRef, fr segment.Frame, zero, ok bool) {
	if !m.changeset.Contains(uint32(p)) {
		return nil, segment.Frame{}, false, false
	}
	for i := range m.segments {
		r := &m.segments[i]
		if r.pages.Contains(uint32(p)) {
			fr, _ := r.frameOf(p)
			return r, fr, false, true
		}
	}
	return nil, segment.Frame{}, true, true
}

func (m *remoteMap) encode() ([]byte, error) {
	set, err := m.changeset.ToBytes()
	if err != nil {
		return nil, fmt.Errorf("encode changeset: %w", err)
	}
	b := make([]byte, 0, remoteMapFixed+len(set)+64)
	b = append(b, remoteMapMagic...)
	b = append(b, remoteMapFormat, m.level)
	b = binary.BigEndian.AppendUint64(b, m.fromSeq)
	b = binary.BigEndian.AppendUint64(b, m.toSeq)
	b = binary.BigEndian.AppendUint64(b, uint64(m.parent))
	b = binary.BigEndian.AppendUint64(b, uint64(m.version))
	b = binary.BigEndian.AppendUint32(b, m.pageCount)
	b = binary.BigEndian.AppendUint32(b, m.pageSize)
	b = binary.BigEndian.AppendUint32(b, m.minCount)
	b = binary.BigEndian.AppendUint64(b, uint64(m.time.UnixNano()))
	body := len(b)
	b = binary.AppendUvarint(b, uint64(len(set)))
	b = append(b, set...)
	b = binary.AppendUvarint(b, uint64(len(m.segments)))
	for _, r := range m.segments {
		b = append(b, r.id[:]...)
		b = binary.BigEndian.AppendUint64(b, r.salt)
		b = binary.AppendUvarint(b, uint64(r.size))
		pages, err := r.pages.ToBytes()
		if err != nil {
			return nil, fmt.Errorf("encode segment pages: %w", err)
		}
		b = binary.AppendUvarint(b, uint64(len(pages)))
		b = append(b, pages...)
		b = binary.AppendUvarint(b, uint64(len(r.frames)))
		next, end := uint64(0), int64(0)
		for _, f := range r.frames {
			b = binary.AppendUvarint(b, uint64(f.First)-next)
			b = binary.AppendUvarint(b, uint64(f.Last-f.First))
			b = binary.AppendUvarint(b, uint64(f.Offset-end))
			b = binary.AppendUvarint(b, uint64(f.Length))
			next, end = uint64(f.Last)+1, f.End()
		}
	}
	if n := len(b) - body; n >= compressMapsFrom {
		z := binary.AppendUvarint(nil, uint64(n))
		z = mapEncoder().EncodeAll(b[body:], z)
		if len(z) < n {
			b = append(b[:body], z...)
			b[4] = remoteMapFormatZstd
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
	case remoteMapFormat:
		return b, nil
	case remoteMapFormatZstd:
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
	return nil, fmt.Errorf("format %d, this build knows %d and %d", format, remoteMapFormat, remoteMapFormatZstd)
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

// decodeRemoteMap checks and decodes a map; what names the object in
// errors, which wrap ErrCorrupt.
func decodeRemoteMap(what string, b []byte) (*remoteMap, error) {
	bad := func(format string, args ...any) (*remoteMap, error) {
		return nil, fmt.Errorf("%w: %s: %s", ErrCorrupt, what, fmt.Sprintf(format, args...))
	}
	if len(b) < remoteMapFixed+4 || string(b[:4]) != remoteMapMagic {
		return bad("not a Cambium commit or rollup (%d bytes)", len(b))
	}
	n := len(b) - 4
	if got, want := binary.BigEndian.Uint32(b[n:]), crc32.Checksum(b[:n], castagnoli); got != want {
		return bad("checksum %08x, want %08x", got, want)
	}
	body, err := mapBody(b[4], b[remoteMapFixed:n])
	if err != nil {
		return bad("%v", err)
	}
	m := &remoteMap{
		level:     b[5],
		fromSeq:   binary.BigEndian.Uint64(b[6:]),
		toSeq:     binary.BigEndian.Uint64(b[14:]),
		parent:    Version(binary.BigEndian.Uint64(b[22:])),
		version:   Version(binary.BigEndian.Uint64(b[30:])),
		pageCount: binary.BigEndian.Uint32(b[38:]),
		pageSize:  binary.BigEndian.Uint32(b[42:]),
		minCount:  binary.BigEndian.Uint32(b[46:]),
		time:      time.Unix(0, int64(binary.BigEndian.Uint64(b[50:]))),
	}
	if m.level > maxRollupLevel || m.toSeq-m.fromSeq != 1<<m.level || m.toSeq <= m.fromSeq {
		return bad("level %d covers commits %d..%d", m.level, m.fromSeq+1, m.toSeq)
	}
	if m.version <= m.parent || (m.pageSize != 0 && !validPageSize(m.pageSize)) || m.minCount > m.pageCount {
		return bad("versions %d..%d, page size %d, page counts %d..%d", m.parent, m.version, m.pageSize, m.minCount, m.pageCount)
	}
	r := &mapReader{b: body}
	m.changeset = r.bitmap()
	nseg := r.uvarint()
	if r.err == nil && nseg > uint64(len(r.b)) {
		return bad("%d segments in %d bytes", nseg, len(r.b))
	}
	located := roaring.New()
	for i := uint64(0); i < nseg && r.err == nil; i++ {
		var ref segmentRef
		copy(ref.id[:], r.bytes(segmentIDLen))
		if raw := r.bytes(8); raw != nil {
			ref.salt = binary.BigEndian.Uint64(raw)
		}
		ref.size = int64(r.uvarint())
		ref.pages = r.bitmap()
		nf := r.uvarint()
		if r.err != nil {
			break
		}
		if nf > uint64(len(r.b)) || ref.size < segment.HeaderSize+segment.TrailerSize || ref.size > 1<<40 {
			return bad("segment %s: %d frames, size %d", ref.id, nf, ref.size)
		}
		next, end := uint64(0), int64(0)
		for j := uint64(0); j < nf && r.err == nil; j++ {
			first := next + r.uvarint()
			count := r.uvarint() + 1
			off := end + int64(r.uvarint())
			length := r.uvarint()
			if r.err != nil {
				break
			}
			last := first + count - 1
			// A frame may reach past the page count: a rollup keeps the
			// frames of pages a later truncation left, and a frame can
			// also hold pages it cut off.
			if first == 0 || last > 1<<32-1 || count > segment.MaxFrameBytes/segment.MinPageSize ||
				off < segment.HeaderSize || length <= segment.FrameTrailerSize || length > segment.MaxFrameBytes*2 ||
				off+int64(length) > ref.size {
				return bad("segment %s frame %d: pages %d..%d at %d+%d", ref.id, j, first, last, off, length)
			}
			fr := segment.Frame{Offset: off, Length: uint32(length), First: PageNo(first), Last: PageNo(last)}
			ref.frames = append(ref.frames, fr)
			next, end = last+1, fr.End()
		}
		if r.err != nil {
			break
		}
		if !ref.pages.IsEmpty() && !roaring.And(ref.pages, m.changeset).Equals(ref.pages) {
			return bad("segment %s holds pages outside the changeset", ref.id)
		}
		if located.Intersects(ref.pages) {
			return bad("segment %s holds pages another segment holds", ref.id)
		}
		for p := range roaring.Values(ref.pages) {
			if _, ok := ref.frameOf(PageNo(p)); !ok {
				return bad("segment %s: page %d is in no frame", ref.id, p)
			}
		}
		located.Or(ref.pages)
		m.segments = append(m.segments, ref)
	}
	if r.err != nil {
		return bad("%v", r.err)
	}
	if len(r.b) != 0 {
		return bad("%d stray bytes", len(r.b))
	}
	if !m.changeset.IsEmpty() && m.changeset.Maximum() > m.pageCount {
		return bad("changeset reaches page %d of %d", m.changeset.Maximum(), m.pageCount)
	}
	if m.minCount < m.pageCount && uint64(m.changeset.Rank(m.pageCount)-m.changeset.Rank(m.minCount)) != uint64(m.pageCount-m.minCount) {
		return bad("pages %d..%d changed by truncation are not all in the changeset", m.minCount+1, m.pageCount)
	}
	return m, nil
}

// mergeMaps returns the map of older followed by newer, which must be
// adjacent (older.version == newer.parent).
func mergeMaps(older, newer *remoteMap) (*remoteMap, error) {
	if older.version != newer.parent || older.toSeq != newer.fromSeq {
		return nil, fmt.Errorf("%w: merge maps of versions %d..%d and %d..%d (commits %d..%d and %d..%d): not adjacent",
			ErrCorrupt, older.parent, older.version, newer.parent, newer.version, older.fromSeq+1, older.toSeq, newer.fromSeq+1, newer.toSeq)
	}
	if older.pageSize != 0 && newer.pageSize != 0 && older.pageSize != newer.pageSize {
		return nil, fmt.Errorf("%w: page size changes from %d to %d at version %d", ErrCorrupt, older.pageSize, newer.pageSize, newer.parent)
	}
	m := &remoteMap{
		fromSeq:   older.fromSeq,
		toSeq:     newer.toSeq,
		parent:    older.parent,
		version:   newer.version,
		pageCount: newer.pageCount,
		pageSize:  max(older.pageSize, newer.pageSize),
		minCount:  min(older.minCount, newer.minCount),
		time:      newer.time,
		changeset: roaring.Or(older.changeset, newer.changeset),
	}
	if l := m.toSeq - m.fromSeq; l&(l-1) == 0 {
		m.level = uint8(bitsLen(l) - 1)
	}
	if n := uint64(m.pageCount); n < 1<<32-1 {
		m.changeset.RemoveRange(n+1, 1<<32)
	}
	m.changeset.RunOptimize()
	for _, r := range older.segments {
		pages := roaring.AndNot(r.pages, newer.changeset)
		if n := uint64(m.pageCount); n < 1<<32-1 {
			pages.RemoveRange(n+1, 1<<32)
		}
		if pages.IsEmpty() {
			continue
		}
		pages.RunOptimize()
		m.segments = append(m.segments, segmentRef{id: r.id, salt: r.salt, size: r.size, pages: pages, frames: framesHolding(r.frames, pages)})
	}
	m.segments = append(m.segments, newer.segments...)
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

func bitsLen(x uint64) int {
	n := 0
	for ; x != 0; x >>= 1 {
		n++
	}
	return n
}

// piece is one map a pull reads: a rollup of level L starting after
// commit start, or (level 0) one commit.
type piece struct {
	level uint8
	start uint64
}

// pieces splits the commits from+1..to into aligned rollups, largest
// first where alignment allows: at most 2*log2(to-from) of them.
func pieces(from, to uint64) []piece {
	var out []piece
	for t := from; t < to; {
		l := uint8(0)
		for l < maxRollupLevel {
			size := uint64(1) << (l + 1)
			if t%size != 0 || t+size > to {
				break
			}
			l++
		}
		out = append(out, piece{level: l, start: t})
		t += 1 << l
	}
	return out
}
