package engine

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"net/url"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
)

// Object storage layout. A volume's objects live under one prefix, its
// name escaped into a single key part so that no volume's keys can fall
// under another's prefix ("a" and "a/c" stay apart):
//
//	v/<escaped name>/c/<parent, 16 hex digits>   remote commit record
//	v/<escaped name>/s/<segment id, 32 hex>       segment (package segment)
//
// A remote commit record claims the successor of its parent version: it is
// created with Store.Create, so of two writers pushing from the same parent
// exactly one succeeds, and a reader finds every commit after version X with
// one LIST starting after X's key. A remote commit covers the version range
// (parent, version] of the same numbering as local commits, so version N is
// the same bytes everywhere. Segments are written before the record that
// names them, under random IDs, and never change.
//
// Remote commit record, big-endian:
//
//	offset  size  field
//	0       4     magic "CMBC"
//	4       1     format version (1)
//	5       8     parent version
//	13      8     version
//	21      4     page count after the commit
//	25      4     page size
//	29      8     commit time, unix nanoseconds
//	37      16    segment ID
//	53      8     segment size in bytes
//	61      ...   changeset length (uvarint), changeset (roaring, portable):
//	              exactly the pages the segment holds
//	end-4   4     CRC-32C of every byte before it
//
// Pages up to the page count that are not in the changeset are unchanged
// from the parent; pages above it are gone.

const (
	remoteCommitMagic  = "CMBC"
	remoteCommitFormat = 1
	segmentIDLen       = 16
)

// SegmentID names a segment object.
type SegmentID [segmentIDLen]byte

func (id SegmentID) String() string { return hex.EncodeToString(id[:]) }

func newSegmentID() (SegmentID, error) {
	var id SegmentID
	_, err := rand.Read(id[:])
	return id, err
}

// ParseSegmentID parses 32 hex digits.
func ParseSegmentID(s string) (SegmentID, error) {
	var id SegmentID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != segmentIDLen {
		return id, fmt.Errorf("parse segment id %q: want %d hex digits", s, 2*segmentIDLen)
	}
	copy(id[:], b)
	return id, nil
}

func remotePrefix(volume string) string { return "v/" + url.PathEscape(volume) + "/" }

func remoteCommitKey(volume string, parent Version) string {
	return fmt.Sprintf("%sc/%016x", remotePrefix(volume), uint64(parent))
}

func remoteSegmentKey(volume string, id SegmentID) string {
	return remotePrefix(volume) + "s/" + id.String()
}

// remoteCommit is a decoded remote commit record.
type remoteCommit struct {
	parent, version Version
	pageCount       uint32
	pageSize        uint32
	time            time.Time
	segment         SegmentID
	segmentSize     int64
	changeset       *roaring.Bitmap
}

func (c remoteCommit) encode() ([]byte, error) {
	set, err := c.changeset.ToBytes()
	if err != nil {
		return nil, fmt.Errorf("encode changeset: %w", err)
	}
	b := make([]byte, 0, 61+binary.MaxVarintLen64+len(set)+4)
	b = append(b, remoteCommitMagic...)
	b = append(b, remoteCommitFormat)
	b = binary.BigEndian.AppendUint64(b, uint64(c.parent))
	b = binary.BigEndian.AppendUint64(b, uint64(c.version))
	b = binary.BigEndian.AppendUint32(b, c.pageCount)
	b = binary.BigEndian.AppendUint32(b, c.pageSize)
	b = binary.BigEndian.AppendUint64(b, uint64(c.time.UnixNano()))
	b = append(b, c.segment[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.segmentSize))
	b = binary.AppendUvarint(b, uint64(len(set)))
	b = append(b, set...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// decodeRemoteCommit checks and decodes a remote commit record; what names
// the object in errors.
func decodeRemoteCommit(what string, b []byte) (remoteCommit, error) {
	if len(b) < 61+1+4 || string(b[:4]) != remoteCommitMagic {
		return remoteCommit{}, fmt.Errorf("%w: %s is not a commit record (%d bytes)", ErrCorrupt, what, len(b))
	}
	n := len(b) - 4
	if got, want := binary.BigEndian.Uint32(b[n:]), crc32.Checksum(b[:n], castagnoli); got != want {
		return remoteCommit{}, fmt.Errorf("%w: %s checksum %08x, want %08x", ErrCorrupt, what, got, want)
	}
	if b[4] != remoteCommitFormat {
		return remoteCommit{}, fmt.Errorf("%w: %s has format %d, this build knows %d", ErrCorrupt, what, b[4], remoteCommitFormat)
	}
	c := remoteCommit{
		parent:      Version(binary.BigEndian.Uint64(b[5:13])),
		version:     Version(binary.BigEndian.Uint64(b[13:21])),
		pageCount:   binary.BigEndian.Uint32(b[21:25]),
		pageSize:    binary.BigEndian.Uint32(b[25:29]),
		time:        time.Unix(0, int64(binary.BigEndian.Uint64(b[29:37]))),
		segmentSize: int64(binary.BigEndian.Uint64(b[53:61])),
	}
	copy(c.segment[:], b[37:53])
	var err error
	if c.changeset, err = decodeBitmap(what, b[61:n]); err != nil {
		return remoteCommit{}, err
	}
	if c.version <= c.parent || c.segmentSize < 0 || (c.pageSize != 0 && !validPageSize(c.pageSize)) {
		return remoteCommit{}, fmt.Errorf("%w: %s: versions %d..%d, page size %d, segment size %d",
			ErrCorrupt, what, c.parent, c.version, c.pageSize, c.segmentSize)
	}
	if !c.changeset.IsEmpty() && c.changeset.Maximum() > c.pageCount {
		return remoteCommit{}, fmt.Errorf("%w: %s: changeset reaches page %d of %d", ErrCorrupt, what, c.changeset.Maximum(), c.pageCount)
	}
	return c, nil
}

// pushRecord is a volume's replication bookkeeping, stored locally:
//
//	fmt=1 | pushed (8) | diverged (1) | pending length (uvarint) | pending | crc (4)
//
// pushed is the newest local version known to be in the remote. pending,
// when not empty, is the encoded remote commit record of a push whose
// segment is uploaded but whose claim may not have happened: a retry claims
// exactly these bytes again.
type pushRecord struct {
	pushed   Version
	diverged bool
	pending  []byte
}

func (r pushRecord) encode() []byte {
	b := []byte{recordFormat}
	b = binary.BigEndian.AppendUint64(b, uint64(r.pushed))
	if r.diverged {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(r.pending)))
	b = append(b, r.pending...)
	return sealRecord(b)
}

func decodePushRecord(what string, b []byte) (pushRecord, error) {
	body, err := openRecord(what, b, 10)
	if err != nil {
		return pushRecord{}, err
	}
	r := pushRecord{pushed: Version(binary.BigEndian.Uint64(body[0:8])), diverged: body[8] == 1}
	n, k := binary.Uvarint(body[9:])
	if k <= 0 || n != uint64(len(body)-9-k) || body[8] > 1 {
		return pushRecord{}, fmt.Errorf("%w: %s: pending length unreadable or wrong", ErrCorrupt, what)
	}
	r.pending = bytes.Clone(body[9+k:])
	return r, nil
}

func validPageSize(n uint32) bool { return n >= 512 && n <= 65536 && n&(n-1) == 0 }
