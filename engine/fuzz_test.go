package engine

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/segment"
)

// FuzzDecodeRecords feeds arbitrary bytes to every record decoder: each
// either decodes to a record that encodes back to it (to the same bytes, or,
// for the records holding bitmaps, to bytes that decode to the same) or
// returns ErrCorrupt, and never panics. The CRC is
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
		// What decodes encodes to a record that decodes to the same
		// (a bitmap may have several encodings).
		if c, err := decodeCommitRecord("commit", b); err == nil {
			again, err := c.encode()
			if err != nil {
				t.Fatal(err)
			}
			if c2, err := decodeCommitRecord("commit", again); err != nil || c2.parent != c.parent || c2.pageCount != c.pageCount ||
				c2.pageSize != c.pageSize || !c2.time.Equal(c.time) || !c2.changeset.Equals(c.changeset) {
				t.Fatalf("commit record %+v re-encodes to %+v, %v", c, c2, err)
			}
		} else {
			check(err)
		}
		if sp, err := decodeSpillRecord("spill", b); err == nil {
			again, err := sp.encode()
			if err != nil {
				t.Fatal(err)
			}
			if sp2, err := decodeSpillRecord("spill", again); err != nil || sp2.version != sp.version || !sp2.pages.Equals(sp.pages) {
				t.Fatalf("spill record %+v re-encodes to %+v, %v", sp, sp2, err)
			}
		} else {
			check(err)
		}
		if h, err := decodeHeadRecord("head", b); err == nil {
			if again := h.encode(); !bytes.Equal(again, b) {
				t.Fatalf("head record %+v encodes to %x, decoded from %x", h, again, b)
			}
		} else {
			check(err)
		}
		if vr, err := decodeVolumeRecord("vol", b); err == nil {
			if again := vr.encode(); !bytes.Equal(again, b) {
				t.Fatalf("volume record %+v encodes to %x, decoded from %x", vr, again, b)
			}
		} else {
			check(err)
		}
		if pv, err := decodePrunedRecord("pruned", b); err == nil {
			if again := encodePrunedRecord(pv); !bytes.Equal(again, b) {
				t.Fatalf("pruned record %d encodes to %x, decoded from %x", pv, again, b)
			}
		} else {
			check(err)
		}
		repl, err := decodeReplRecord("repl", b)
		check(err)
		if err == nil {
			// What decodes encodes to the same bytes.
			if again := repl.encode(); !bytes.Equal(again, b) {
				t.Fatalf("replication record %+v encodes to %x, decoded from %x", repl, again, b)
			}
		}
	})
}

// FuzzDecodePageValue feeds arbitrary bytes to the page value decoder
// (512-byte pages) and, for a stub, arbitrary frame bytes to the frame
// decoder: a value either decodes to one that encodes to the same bytes or
// is ErrCorrupt; a frame either decodes to whole pages or is
// ErrRemoteCorrupt.
func FuzzDecodePageValue(f *testing.F) {
	ref := manifest.SegmentRef{ID: SegmentID{1, 2, 3}, Salt: 99, Size: 1 << 20}
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
			again = encodeStub(nil, manifest.SegmentRef{ID: s.seg, Salt: s.salt, Size: s.size}, s.frame)
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

// FuzzParseNames feeds arbitrary strings and bytes to the parsers of
// versions and Pebble page keys: what parses formats back to the same text.
// The remote's keys and segment IDs are fuzzed in package manifest.
func FuzzParseNames(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef", []byte{tagPage, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe})
	f.Add("03/00000000000000ff", []byte{})
	f.Add("18446744073709551615", []byte{1})
	f.Fuzz(func(t *testing.T, s string, key []byte) {
		if v, err := ParseVersion(s); err == nil {
			if again, err := ParseVersion(v.String()); err != nil || again != v {
				t.Fatalf("version %q parses to %d, which formats as %q", s, v, v.String())
			}
		}
		if id, p, v, ok := decodePageKey(key); ok {
			if again := appendPageKey(nil, id, p, v); !bytes.Equal(again, key) {
				t.Fatalf("page key %x decodes to (%d, %d, %d), which encode to %x", key, id, p, v, again)
			}
		}
	})
}
