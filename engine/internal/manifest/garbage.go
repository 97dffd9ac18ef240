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

// EncodeGarbage returns the encoding of a garbage list naming objects
// by their keys after the volume's prefix (such as "s/<segment ID>" or
// "k/<version>"), in ascending order without repeats whatever their
// order here. Keys must not be empty.
func EncodeGarbage(rests []string) []byte {
	rests = slices.Clone(rests)
	slices.Sort(rests)
	rests = slices.Compact(rests)
	b := append([]byte{}, garbageMagic...)
	b = append(b, garbageFormat)
	b = binary.AppendUvarint(b, uint64(len(rests)))
	for _, r := range rests {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeGarbage decodes a garbage list: the keys it names after the
// volume's prefix, in ascending order. Bytes that are not a valid list
// are ErrCorrupt.
func DecodeGarbage(b []byte) ([]string, error) {
	bad := func(format string, args ...any) ([]string, error) {
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
	body := b[head:n]
	uvarint := func() (uint64, bool) {
		v, k := binary.Uvarint(body)
		if k <= 0 || k != len(binary.AppendUvarint(nil, v)) {
			return 0, false
		}
		body = body[k:]
		return v, true
	}
	count, ok := uvarint()
	if !ok || count > uint64(len(body)/2) {
		return bad("bad count")
	}
	rests := make([]string, 0, count)
	for i := range count {
		l, ok := uvarint()
		if !ok || l == 0 || l > maxGarbageKeyLen || l > uint64(len(body)) {
			return bad("bad length of key %d", i)
		}
		r := string(body[:l])
		body = body[l:]
		if len(rests) > 0 && rests[len(rests)-1] >= r {
			return bad("keys out of order at %d", i)
		}
		rests = append(rests, r)
	}
	if len(body) != 0 {
		return bad("%d bytes after the keys", len(body))
	}
	return rests, nil
}

// maxGarbageKeyLen bounds a key in a garbage list (S3's limit on a whole
// key).
const maxGarbageKeyLen = 1024
