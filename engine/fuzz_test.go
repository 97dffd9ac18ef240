package engine

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/segment"
)

// FuzzDecodeRecords feeds arbitrary bytes to every record decoder: each
// either decodes or returns ErrCorrupt, and never panics. The CRC is
// re-sealed when the flag is set, so the parsers behind it are reached.
func FuzzDecodeRecords(f *testing.F) {
	set := roaring.BitmapOf(1, 2, 3, 1000, 70000)
	commit, _ := commitRecord{parent: 4, pageCount: 9, pageSize: 4096, time: time.Unix(1, 0), changeset: set}.encode()
	spill, _ := spillRecord{version: 3, pages: set}.encode()
	for _, seed := range [][]byte{
		commit, spill,
		headRecord{version: 5, pageCount: 2, pageSize: 512}.encode(),
		volumeRecord{id: 7, created: time.Unix(2, 0)}.encode(),
		encodePrunedRecord(9),
		replRecord{pushed: 8, seq: 3, lastParent: 5, remoteVersion: 9, diverged: true, url: "file:///r", pending: []byte("claim")}.encode(),
		replRecord{}.encode(),
		encodeCommitLogPosition(commitLogPosition{epoch: 4, seq: 17}),
	} {
		f.Add(seed, false)
		f.Add(seed[:len(seed)-4], true)
	}
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		if seal {
			b = sealRecord(append([]byte(nil), b...))
		}
		check := func(err error) {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
		}
		_, err := decodeCommitRecord("commit", b)
		check(err)
		_, err = decodeSpillRecord("spill", b)
		check(err)
		_, err = decodeHeadRecord("head", b)
		check(err)
		_, err = decodeVolumeRecord("vol", b)
		check(err)
		_, err = decodePrunedRecord("pruned", b)
		check(err)
		repl, err := decodeReplRecord("repl", b)
		check(err)
		if err == nil {
			// What decodes encodes to the same bytes.
			if again := repl.encode(); !bytes.Equal(again, b) {
				t.Fatalf("replication record %+v encodes to %x, decoded from %x", repl, again, b)
			}
		}
		pos, err := decodeCommitLogPosition(b)
		check(err)
		if err == nil && !bytes.Equal(encodeCommitLogPosition(pos), b) {
			t.Fatalf("position %+v does not encode to %x", pos, b)
		}
	})
}

// FuzzDecodePageValue feeds arbitrary bytes to the page value decoder
// (512-byte pages) and, for a stub, arbitrary frame bytes to the frame
// decoder: a value either decodes to one that encodes to the same bytes or
// is ErrCorrupt; a frame either decodes to whole pages or is
// ErrRemoteCorrupt.
func FuzzDecodePageValue(f *testing.F) {
	ref := segmentRef{id: SegmentID{1, 2, 3}, salt: 99, size: 1 << 20}
	good := encodeStub(nil, ref, segment.Frame{Offset: 4096, Length: 300, First: 7, Last: 9})
	f.Add(good, []byte("not a frame"))
	f.Add(good[:len(good)-1], []byte{})
	f.Add(encodeStub(nil, ref, segment.Frame{Offset: 1 << 20, Length: 1, First: 2, Last: 1}), []byte{0})
	image := make([]byte, imageValueLen(512))
	encodeImage(image, bytes.Repeat([]byte{7}, 512))
	f.Add(image, []byte{})
	f.Add(image[:len(image)-1], []byte{})
	f.Add(encodeZero(), []byte{})
	f.Add([]byte{}, []byte{})
	f.Add([]byte{3}, []byte{})
	f.Fuzz(func(t *testing.T, b, frame []byte) {
		pv, err := decodePageValue(pageAt{p: 1, u: 2}, b, 512)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			if len(b) > 0 && pv.kind != pageKind(b[0]) {
				t.Fatalf("damaged value %x decoded as kind %d", b, pv.kind)
			}
			return
		}
		var again []byte
		switch pv.kind {
		case pageImage:
			again = make([]byte, imageValueLen(len(pv.image)))
			encodeImage(again, pv.image)
			if len(pv.image) != 512 || &pv.image[0] != &b[1] {
				t.Fatalf("image of %d bytes, want 512 sharing the value's", len(pv.image))
			}
		case pageZero:
			again = encodeZero()
		case pageStub:
			s := pv.stub
			again = encodeStub(nil, segmentRef{id: s.seg, salt: s.salt, size: s.size}, s.frame)
		default:
			t.Fatalf("value %x decoded as kind %d", b, pv.kind)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("value %+v encodes to %x, decoded from %x", pv, again, b)
		}
		if pv.kind != pageStub {
			return
		}
		s := pv.stub
		pages, err := decodeStubFrame("seg", s, 512, frame)
		if err != nil {
			if !errors.Is(err, ErrRemoteCorrupt) {
				t.Fatalf("frame error does not wrap ErrRemoteCorrupt: %v", err)
			}
			return
		}
		if want := int(s.frame.Last-s.frame.First+1) * 512; len(pages) != want {
			t.Fatalf("frame of pages %d..%d decoded to %d bytes, want %d", s.frame.First, s.frame.Last, len(pages), want)
		}
	})
}

// FuzzDecodeLogEntry feeds arbitrary bytes to the commit log's header and
// entry decoders: they find a whole entry only where its length, epoch,
// sequence number and CRC all hold, its body inside the bytes given.
func FuzzDecodeLogEntry(f *testing.F) {
	entry := func(body []byte, ent logEntry) []byte {
		b := make([]byte, commitLogEntryHeadLen, commitLogEntryHeadLen+len(body))
		putLogEntryHead(b, ent, body)
		return append(b, body...)
	}
	good := entry([]byte("a pebble batch"), logEntry{epoch: 3, seq: 1, volume: 2, version: 8, parent: 7})
	f.Add(good, uint64(3), uint64(1))
	f.Add(good[:len(good)-1], uint64(3), uint64(1))
	f.Add(entry(nil, logEntry{epoch: 1, seq: 2}), uint64(1), uint64(2))
	f.Add(encodeCommitLogHeader(5), uint64(5), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, epoch, seq uint64) {
		if e, ok := decodeCommitLogHeader(b); ok && !bytes.Equal(encodeCommitLogHeader(e), b) && b[8] == commitLogFormat {
			t.Fatalf("header of epoch %d decoded from %x, which it does not encode to", e, b)
		}
		ent, body, ok := decodeLogEntry(b, epoch, seq)
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

// FuzzParseNames feeds arbitrary strings and bytes to the parsers of names
// and keys: what parses formats back to the same text.
func FuzzParseNames(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef", []byte{tagPage, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe})
	f.Add("03/00000000000000ff", []byte{})
	f.Add("18446744073709551615", []byte{1})
	f.Fuzz(func(t *testing.T, s string, key []byte) {
		if id, err := ParseSegmentID(s); err == nil && id.String() != s {
			t.Fatalf("segment id %q formats as %q", s, id.String())
		}
		if v, err := ParseVersion(s); err == nil {
			if again, err := ParseVersion(v.String()); err != nil || again != v {
				t.Fatalf("version %q parses to %d, which formats as %q", s, v, v.String())
			}
		}
		if level, start, ok := parseRollupKey(s); ok {
			if again := remoteRollupKey("x", level, start); again != remotePrefix("x")+"r/"+s {
				t.Fatalf("rollup key %q parses to level %d, start %d, which format as %q", s, level, start, again)
			}
		}
		if id, p, v, ok := decodePageKey(key); ok {
			if again := appendPageKey(nil, id, p, v); !bytes.Equal(again, key) {
				t.Fatalf("page key %x decodes to (%d, %d, %d), which encode to %x", key, id, p, v, again)
			}
		}
	})
}
