package commitlog

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeLogEntry feeds arbitrary bytes to the commit log's header and
// entry decoders: they find a whole entry only where its length, epoch,
// sequence number and CRC all hold, its body inside the bytes given.
func FuzzDecodeLogEntry(f *testing.F) {
	entry := func(body []byte, ent entryHeader) []byte {
		b := make([]byte, entryHeadLen, entryHeadLen+len(body))
		putEntryHeader(b, ent, body)
		return append(b, body...)
	}
	good := entry([]byte("a pebble batch"), entryHeader{epoch: 3, seq: 1, Entry: Entry{Volume: 2, Version: 8, Parent: 7}})
	f.Add(good, uint64(3), uint64(1))
	f.Add(good[:len(good)-1], uint64(3), uint64(1))
	f.Add(entry(nil, entryHeader{epoch: 1, seq: 2}), uint64(1), uint64(2))
	f.Add(encodeHeader(5), uint64(5), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, epoch, seq uint64) {
		if e, ok := decodeHeader(b); ok && !bytes.Equal(encodeHeader(e), b) && b[8] == format {
			t.Fatalf("header of epoch %d decoded from %x, which it does not encode to", e, b)
		}
		ent, body, ok := decodeEntry(b, epoch, seq)
		if !ok {
			return
		}
		if ent.epoch != epoch || ent.seq != seq {
			t.Fatalf("entry %+v decoded where epoch %d, seq %d were wanted", ent, epoch, seq)
		}
		if again := entry(body, ent); !bytes.Equal(again, b[:len(again)]) {
			t.Fatalf("entry %+v with a %d-byte body encodes to other bytes", ent, len(body))
		}
	})
}

// FuzzDecodePosition feeds arbitrary bytes to the position record decoder:
// it either decodes a record that encodes to the same bytes or returns
// ErrCorrupt, and never panics. The CRC is re-sealed when the flag is set,
// so the checks behind it are reached.
func FuzzDecodePosition(f *testing.F) {
	good := encodePosition(position{epoch: 4, seq: 17})
	f.Add(good, false)
	f.Add(good[:len(good)-4], true)
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		if sealed {
			b = seal(append([]byte(nil), b...))
		}
		pos, err := decodePosition(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if !bytes.Equal(encodePosition(pos), b) {
			t.Fatalf("position %+v does not encode to %x", pos, b)
		}
	})
}
