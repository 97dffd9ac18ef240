package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
)

// The remote object layout (keys, and what each object holds) and the
// format of remote commits and rollups are package manifest's; the engine
// decides what a damaged one means.

// SegmentID names a segment object.
type SegmentID = manifest.SegmentID

// ParseSegmentID parses 32 lower-case hex digits, as SegmentID.String
// formats them.
func ParseSegmentID(s string) (SegmentID, error) { return manifest.ParseSegmentID(s) }

// decodeRemoteMap checks and decodes a commit or rollup read from the
// remote; what names it in errors, which wrap ErrRemoteCorrupt and
// manifest.ErrCorrupt.
func decodeRemoteMap(what string, b []byte) (*manifest.Map, error) {
	m, err := manifest.DecodeMap(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRemoteCorrupt, what, err)
	}
	return m, nil
}

// decodePendingMap decodes the pending commit of a replication record, a
// local record: damage there is ErrCorrupt.
func decodePendingMap(what string, b []byte) (*manifest.Map, error) {
	m, err := manifest.DecodeMap(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	return m, nil
}

// mergeMaps returns the map of remote maps older followed by newer; maps
// that cannot follow each other are ErrRemoteCorrupt.
func mergeMaps(older, newer *manifest.Map) (*manifest.Map, error) {
	m, err := manifest.Merge(older, newer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRemoteCorrupt, err)
	}
	return m, nil
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
// claimed the version after pushed. Flag bit 1 is pushedHere: this data
// directory pushed version pushed (a pull clears it), so no other process
// can push after it without pulling first (see collector.collect). url is the remote the volume follows,
// "" until it first replicates. pending, when not empty, is the encoded
// remote commit of a push whose segments are uploaded but whose claim may
// not have happened: a retry claims exactly these bytes again.
type replRecord struct {
	pushed        Version
	seq           uint64
	lastParent    Version
	remoteVersion Version
	diverged      bool
	pushedHere    bool
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
	if r.pushedHere {
		flags |= 2
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
		pushedHere:    body[32]&2 != 0,
	}
	rest := body[33:]
	url, ok := cutField(&rest)
	if !ok {
		return replRecord{}, fmt.Errorf("%w: %s: the remote URL's length runs past the record", ErrCorrupt, what)
	}
	pending, ok := cutField(&rest)
	switch {
	case !ok:
		return replRecord{}, fmt.Errorf("%w: %s: the pending commit's length runs past the record", ErrCorrupt, what)
	case len(rest) != 0:
		return replRecord{}, fmt.Errorf("%w: %s: %d bytes after the pending commit", ErrCorrupt, what, len(rest))
	case body[32] > 3:
		return replRecord{}, fmt.Errorf("%w: %s: flags %#x", ErrCorrupt, what, body[32])
	}
	r.url, r.pending = string(url), bytes.Clone(pending)
	return r, nil
}

// cutField cuts a uvarint-length-prefixed field from the front of *b.
func cutField(b *[]byte) ([]byte, bool) {
	n, k := binary.Uvarint(*b)
	if k <= 0 || n > uint64(len(*b)-k) {
		return nil, false
	}
	f := (*b)[k : k+int(n)]
	*b = (*b)[k+int(n):]
	return f, true
}
