package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cambiumdb/cambium/segment"
)

// Records are small values with a format byte first and a CRC-32C of the
// bytes before it last. Layouts, all integers big-endian:
//
//	volume record  fmt=1 | id (8) | created unix nanoseconds (8) | crc (4)
//	head record    fmt=1 | version (8) | page count (4) | page size (4) | crc (4)
//	pruned record  fmt=1 | version (8) | crc (4): the pruner is done through version
//	commit record  fmt=1 | parent (8) | page count (4) | page size (4) | unix nanoseconds (8)
//	               | changeset length (uvarint) | changeset: roaring, portable | crc (4)
//	spill record   fmt=1 | version (8) | pages: roaring, portable | crc (4)
//
// The page size is per version: a commit that changes it (Txn.SetPageSize)
// rewrites every page, so that its changeset is 1..page count and no image
// of the old size is read at or after it, while older versions keep theirs.
//
// (The commit log position record is the commit log's: see package
// commitlog.)
//
// Page values are not records: their format is in pagevalue.go.
const recordFormat = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func sealRecord(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// openRecord checks a record's format byte, length and CRC and returns the
// bytes between the format byte and the CRC.
func openRecord(what string, b []byte, minBody int) ([]byte, error) {
	if len(b) < 1+minBody+4 {
		return nil, fmt.Errorf("%w: %s is %d bytes, too short", ErrCorrupt, what, len(b))
	}
	if b[0] != recordFormat {
		return nil, fmt.Errorf("%w: %s has format %d, this build knows %d", ErrCorrupt, what, b[0], recordFormat)
	}
	n := len(b) - 4
	if got, want := binary.BigEndian.Uint32(b[n:]), crc32.Checksum(b[:n], castagnoli); got != want {
		return nil, fmt.Errorf("%w: %s checksum %08x, want %08x", ErrCorrupt, what, got, want)
	}
	return b[1:n], nil
}

// openFixedRecord is openRecord for a record whose body is always n bytes.
func openFixedRecord(what string, b []byte, n int) ([]byte, error) {
	body, err := openRecord(what, b, n)
	if err == nil && len(body) != n {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrCorrupt, what, len(b), 1+n+4)
	}
	return body, err
}

type volumeRecord struct {
	id      VolumeID
	created time.Time
}

func (r volumeRecord) encode() []byte {
	b := []byte{recordFormat}
	b = binary.BigEndian.AppendUint64(b, uint64(r.id))
	b = binary.BigEndian.AppendUint64(b, uint64(r.created.UnixNano()))
	return sealRecord(b)
}

func decodeVolumeRecord(name string, b []byte) (volumeRecord, error) {
	body, err := openFixedRecord(fmt.Sprintf("volume record of %q", name), b, 16)
	if err != nil {
		return volumeRecord{}, err
	}
	return volumeRecord{
		id:      VolumeID(binary.BigEndian.Uint64(body[0:8])),
		created: time.Unix(0, int64(binary.BigEndian.Uint64(body[8:16]))),
	}, nil
}

// headRecord is a volume's newest state.
type headRecord struct {
	version   Version
	pageCount uint32
	pageSize  uint32 // 0 until the first commit
}

func (h headRecord) encode() []byte {
	b := []byte{recordFormat}
	b = binary.BigEndian.AppendUint64(b, uint64(h.version))
	b = binary.BigEndian.AppendUint32(b, h.pageCount)
	b = binary.BigEndian.AppendUint32(b, h.pageSize)
	return sealRecord(b)
}

func decodeHeadRecord(what string, b []byte) (headRecord, error) {
	body, err := openFixedRecord(what, b, 16)
	if err != nil {
		return headRecord{}, err
	}
	h := headRecord{
		version:   Version(binary.BigEndian.Uint64(body[0:8])),
		pageCount: binary.BigEndian.Uint32(body[8:12]),
		pageSize:  binary.BigEndian.Uint32(body[12:16]),
	}
	if h.pageSize != 0 && !segment.ValidPageSize(int(h.pageSize)) {
		return headRecord{}, fmt.Errorf("%w: %s: page size %d", ErrCorrupt, what, h.pageSize)
	}
	return h, nil
}

// commitRecord describes one commit: the change from parent to parent+1.
type commitRecord struct {
	parent    Version
	pageCount uint32
	pageSize  uint32
	time      time.Time
	changeset *roaring.Bitmap // pages written by the commit
}

func (c commitRecord) encode() ([]byte, error) {
	set, err := c.changeset.ToBytes()
	if err != nil {
		return nil, fmt.Errorf("encode changeset: %w", err)
	}
	b := make([]byte, 0, 1+24+binary.MaxVarintLen64+len(set)+4)
	b = append(b, recordFormat)
	b = binary.BigEndian.AppendUint64(b, uint64(c.parent))
	b = binary.BigEndian.AppendUint32(b, c.pageCount)
	b = binary.BigEndian.AppendUint32(b, c.pageSize)
	b = binary.BigEndian.AppendUint64(b, uint64(c.time.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(set)))
	b = append(b, set...)
	return sealRecord(b), nil
}

func decodeCommitRecord(what string, b []byte) (commitRecord, error) {
	body, err := openRecord(what, b, 24+1)
	if err != nil {
		return commitRecord{}, err
	}
	c := commitRecord{
		parent:    Version(binary.BigEndian.Uint64(body[0:8])),
		pageCount: binary.BigEndian.Uint32(body[8:12]),
		pageSize:  binary.BigEndian.Uint32(body[12:16]),
		time:      time.Unix(0, int64(binary.BigEndian.Uint64(body[16:24]))),
	}
	c.changeset, err = decodeBitmap(what, body[24:])
	if err != nil {
		return commitRecord{}, err
	}
	return c, nil
}

// decodeBitmap reads a uvarint-length-prefixed roaring bitmap that must use
// every remaining byte.
func decodeBitmap(what string, b []byte) (*roaring.Bitmap, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n != uint64(len(b)-k) {
		return nil, fmt.Errorf("%w: %s: bitmap length unreadable or wrong", ErrCorrupt, what)
	}
	bm := roaring.New()
	if used, err := bm.ReadFrom(bytes.NewReader(b[k:])); err != nil || uint64(used) != n {
		return nil, fmt.Errorf("%w: %s: bitmap: %v", ErrCorrupt, what, err)
	}
	if err := bm.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: bitmap: %v", ErrCorrupt, what, err)
	}
	return bm, nil
}

// spillRecord names the pages a spilling transaction wrote at version.
type spillRecord struct {
	version Version
	pages   *roaring.Bitmap
}

func (s spillRecord) encode() ([]byte, error) {
	set, err := s.pages.ToBytes()
	if err != nil {
		return nil, fmt.Errorf("encode spill pages: %w", err)
	}
	b := []byte{recordFormat}
	b = binary.BigEndian.AppendUint64(b, uint64(s.version))
	b = binary.AppendUvarint(b, uint64(len(set)))
	b = append(b, set...)
	return sealRecord(b), nil
}

func decodeSpillRecord(what string, b []byte) (spillRecord, error) {
	body, err := openRecord(what, b, 9)
	if err != nil {
		return spillRecord{}, err
	}
	s := spillRecord{version: Version(binary.BigEndian.Uint64(body[0:8]))}
	s.pages, err = decodeBitmap(what, body[8:])
	return s, err
}

func encodePrunedRecord(v Version) []byte {
	return sealRecord(binary.BigEndian.AppendUint64([]byte{recordFormat}, uint64(v)))
}

func decodePrunedRecord(what string, b []byte) (Version, error) {
	body, err := openFixedRecord(what, b, 8)
	if err != nil {
		return 0, err
	}
	return Version(binary.BigEndian.Uint64(body)), nil
}
