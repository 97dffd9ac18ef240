package engine

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
)

// Object storage layout. A volume's objects live under one prefix, its
// name escaped into a single key part so that no volume's keys can fall
// under another's prefix ("a" and "a/c" stay apart):
//
//	v/<escaped name>/c/<parent, 16 hex digits>          remote commit (a level-0 map)
//	v/<escaped name>/r/<level, 2 hex>/<start, 16 hex>   rollup of commits start+1..start+2^level
//	v/<escaped name>/s/<segment id, 32 hex>              segment (package segment)
//
// A remote commit claims the successor of its parent version: it is
// created with Store.Create, so of two writers pushing from the same parent
// exactly one succeeds, and a reader finds every commit after version X
// with one LIST starting at X's key. A remote commit covers the version
// range (parent, version] of the same numbering as local commits, so
// version N is the same bytes everywhere. Segments are written before the
// commit that names them, under random IDs, and never change. Rollups are
// derived data, written by the pusher after its claim; a reader that finds
// one missing or unreadable reads the two halves it merges instead. The
// map format of commits and rollups is in remotemap.go.

const segmentIDLen = 16

// SegmentID names a segment object.
type SegmentID [segmentIDLen]byte

func (id SegmentID) String() string { return hex.EncodeToString(id[:]) }

func newSegmentID() (SegmentID, error) {
	var id SegmentID
	_, err := rand.Read(id[:])
	return id, err
}

// ParseSegmentID parses 32 lower-case hex digits, as String formats them.
func ParseSegmentID(s string) (SegmentID, error) {
	var id SegmentID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != segmentIDLen || s != hex.EncodeToString(b) {
		return id, fmt.Errorf("parse segment id %q: want %d lower-case hex digits", s, 2*segmentIDLen)
	}
	copy(id[:], b)
	return id, nil
}

func remotePrefix(volume string) string { return "v/" + url.PathEscape(volume) + "/" }

func remoteCommitKey(volume string, parent Version) string {
	return fmt.Sprintf("%sc/%016x", remotePrefix(volume), uint64(parent))
}

func remoteRollupKey(volume string, level uint8, start uint64) string {
	return fmt.Sprintf("%sr/%02x/%016x", remotePrefix(volume), level, start)
}

func remoteSegmentKey(volume string, id SegmentID) string {
	return remotePrefix(volume) + "s/" + id.String()
}

// replRecord is a volume's replication state, stored locally:
//
//	fmt=1 | pushed (8) | seq (8) | lastParent (8) | remoteVersion (8) | flags (1)
//	      | remote URL length (uvarint) | URL | pending length (uvarint) | pending | crc (4)
//
// pushed is the newest local version known to be in the remote, the end of
// remote commit number seq, whose parent is lastParent (so that a pusher
// can find that commit to roll it up). remoteVersion is the newest remote
// version this volume has seen. Flag bit 0 is diverged: another writer
// claimed the version after pushed. url is the remote the volume follows,
// "" until it first replicates. pending, when not empty, is the encoded
// remote commit of a push whose segments are uploaded but whose claim may
// not have happened: a retry claims exactly these bytes again.
type replRecord struct {
	pushed        Version
	seq           uint64
	lastParent    Version
	remoteVersion Version
	diverged      bool
	url           string
	pending       []byte
}

func (r replRecord) encode() []byte {
	b := []byte{recordFormat}
	b = binary.BigEndian.AppendUint64(b, uint64(r.pushed))
	b = binary.BigEndian.AppendUint64(b, r.seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.lastParent))
	b = binary.BigEndian.AppendUint64(b, uint64(r.remoteVersion))
	var flags byte
	if r.diverged {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(r.url)))
	b = append(b, r.url...)
	b = binary.AppendUvarint(b, uint64(len(r.pending)))
	b = append(b, r.pending...)
	return sealRecord(b)
}

func decodeReplRecord(what string, b []byte) (replRecord, error) {
	body, err := openRecord(what, b, 35)
	if err != nil {
		return replRecord{}, err
	}
	r := replRecord{
		pushed:        Version(binary.BigEndian.Uint64(body[0:8])),
		seq:           binary.BigEndian.Uint64(body[8:16]),
		lastParent:    Version(binary.BigEndian.Uint64(body[16:24])),
		remoteVersion: Version(binary.BigEndian.Uint64(body[24:32])),
		diverged:      body[32]&1 != 0,
	}
	rd := &mapReader{b: body[33:]}
	r.url = string(rd.bytes(rd.uvarint()))
	r.pending = bytes.Clone(rd.bytes(rd.uvarint()))
	if rd.err != nil || len(rd.b) != 0 || body[32] > 1 {
		return replRecord{}, fmt.Errorf("%w: %s: unreadable (%v)", ErrCorrupt, what, rd.err)
	}
	return r, nil
}

func validPageSize(n uint32) bool { return n >= 512 && n <= 65536 && n&(n-1) == 0 }
