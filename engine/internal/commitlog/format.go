package commitlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The layout's constants (see the tables in doc.go).
const (
	// FileName is the log file's name in Options.Dir.
	FileName = "commits.log"
	// DefaultSize is the size of the log file unless Options.Size says
	// otherwise. The log starts over, with a Pebble flush, each time it
	// fills; as large as a memtable, it rarely needs to before Pebble
	// flushes on its own.
	DefaultSize = 64 << 20

	magic         = "CAMBCLOG"
	format        = 2 // format 1 (Pebble had a log of its own) is read too
	headerLen     = 8 + 1 + 8 + 4
	entriesStart  = 4096
	entryHeadLen  = 4 + 8 + 8 + 8 + 8 + 8 + 4
	maxEntry      = 4 << 20
	positionFmt   = 1
	positionLen   = 1 + 8 + 8 + 4
	positionExtra = 64 // what setting the position record adds to a batch, at most
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// seal appends the CRC of b to b.
func seal(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func encodeHeader(epoch uint64) []byte {
	hdr := make([]byte, 0, headerLen)
	hdr = append(hdr, magic...)
	hdr = append(hdr, format)
	hdr = binary.BigEndian.AppendUint64(hdr, epoch)
	return seal(hdr)
}

func decodeHeader(b []byte) (epoch uint64, ok bool) {
	if len(b) != headerLen || string(b[:8]) != magic || (b[8] != format && b[8] != 1) {
		return 0, false
	}
	if binary.BigEndian.Uint32(b[17:]) != crc32.Checksum(b[:17], castagnoli) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[9:17]), true
}

// entryHeader is an entry's header: its place in the log, and the Entry
// it was written with.
type entryHeader struct {
	epoch, seq uint64
	Entry
}

// decodeEntry decodes the entry at the start of b if it is whole, of
// epoch and numbered seq; ok is false otherwise (the end of the log, or a
// torn entry). body aliases b.
func decodeEntry(b []byte, epoch, seq uint64) (ent entryHeader, body []byte, ok bool) {
	if len(b) < entryHeadLen {
		return entryHeader{}, nil, false
	}
	head := b[:entryHeadLen]
	n := int(binary.BigEndian.Uint32(head[0:4]))
	ent = entryHeader{
		epoch: binary.BigEndian.Uint64(head[4:12]),
		seq:   binary.BigEndian.Uint64(head[12:20]),
		Entry: Entry{
			Volume:  binary.BigEndian.Uint64(head[20:28]),
			Version: binary.BigEndian.Uint64(head[28:36]),
			Parent:  binary.BigEndian.Uint64(head[36:44]),
		},
	}
	if ent.epoch != epoch || ent.seq != seq || n > maxEntry || entryHeadLen+n > len(b) {
		return entryHeader{}, nil, false
	}
	body = b[entryHeadLen : entryHeadLen+n]
	if binary.BigEndian.Uint32(head[44:48]) != crc32.Update(crc32.Checksum(head[:44], castagnoli), castagnoli, body) {
		return entryHeader{}, nil, false // torn: the end of the log
	}
	return ent, body, true
}

// putEntryHeader writes into head the header of the entry ent whose body
// is body (see decodeEntry).
func putEntryHeader(head []byte, ent entryHeader, body []byte) {
	binary.BigEndian.PutUint32(head[0:4], uint32(len(body)))
	binary.BigEndian.PutUint64(head[4:12], ent.epoch)
	binary.BigEndian.PutUint64(head[12:20], ent.seq)
	binary.BigEndian.PutUint64(head[20:28], ent.Volume)
	binary.BigEndian.PutUint64(head[28:36], ent.Version)
	binary.BigEndian.PutUint64(head[36:44], ent.Parent)
	binary.BigEndian.PutUint32(head[44:48], crc32.Update(crc32.Checksum(head[:44], castagnoli), castagnoli, body))
}

// position names an entry: its epoch and its sequence number in the epoch.
type position struct {
	epoch, seq uint64
}

func encodePosition(p position) []byte {
	b := make([]byte, 0, positionLen)
	b = append(b, positionFmt)
	b = binary.BigEndian.AppendUint64(b, p.epoch)
	b = binary.BigEndian.AppendUint64(b, p.seq)
	return seal(b)
}

func decodePosition(b []byte) (position, error) {
	if len(b) != positionLen {
		return position{}, fmt.Errorf("%w: position record is %d bytes, want %d", ErrCorrupt, len(b), positionLen)
	}
	if b[0] != positionFmt {
		return position{}, fmt.Errorf("%w: position record has format %d, this build knows %d", ErrCorrupt, b[0], positionFmt)
	}
	n := len(b) - 4
	if got, want := binary.BigEndian.Uint32(b[n:]), crc32.Checksum(b[:n], castagnoli); got != want {
		return position{}, fmt.Errorf("%w: position record checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	return position{epoch: binary.BigEndian.Uint64(b[1:9]), seq: binary.BigEndian.Uint64(b[9:17])}, nil
}
