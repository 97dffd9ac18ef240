package manifest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// garbageMagic begins every encoded garbage list.
var garbageMagic = []byte("CMBG")

// garbageFormat is the one format of garbage lists.
const garbageFormat = 1

// EncodeGarbage returns the encoding of a garbage list naming segments
// ids (in ascending order, without repeats, whatever their order here).
func EncodeGarbage(ids []SegmentID) []byte {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b SegmentID) int { return bytes.Compare(a[:], b[:]) })
	ids = slices.Compact(ids)
	b := make([]byte, 0, len(garbageMagic)+1+binary.MaxVarintLen64+len(ids)*segmentIDLen+4)
	b = append(b, garbageMagic...)
	b = append(b, garbageFormat)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeGarbage decodes a garbage list: the segment IDs it names, in
// ascending order. Bytes that are not a valid list are ErrCorrupt.
func DecodeGarbage(b []byte) ([]SegmentID, error) {
	bad := func(format string, args ...any) ([]SegmentID, error) {
		return nil, fmt.Errorf("%w: garbage list: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	head := len(garbageMagic) + 1
	if len(b) < head+1+4 {
		return bad("%d bytes", len(b))
	}
	if !bytes.Equal(b[:len(garbageMagic)], garbageMagic) {
		return bad("bad magic %q", b[:len(garbageMagic)])
	}
	if b[len(garbageMagic)] != garbageFormat {
		return bad("unknown format %d", b[len(garbageMagic)])
	}
	n := len(b) - 4
	if got, want := binary.BigEndian.Uint32(b[n:]), crc32.Checksum(b[:n], castagnoli); got != want {
		return bad("checksum %08x, want %08x", got, want)
	}
	count, k := binary.Uvarint(b[head:n])
	if k <= 0 || k != len(binary.AppendUvarint(nil, count)) {
		return bad("bad count")
	}
	body := b[head+k : n]
	if count != uint64(len(body)/segmentIDLen) || len(body)%segmentIDLen != 0 {
		return bad("%d IDs in %d bytes", count, len(body))
	}
	ids := make([]SegmentID, count)
	for i := range ids {
		copy(ids[i][:], body[i*segmentIDLen:])
		if i > 0 && bytes.Compare(ids[i-1][:], ids[i][:]) >= 0 {
			return bad("IDs out of order at %d", i)
		}
	}
	return ids, nil
}
