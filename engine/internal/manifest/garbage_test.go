package manifest

import (
	"errors"
	"slices"
	"testing"
)

// TestGarbage: a garbage list decodes to the IDs encoded, sorted and
// without repeats; any damage is ErrCorrupt.
func TestGarbage(t *testing.T) {
	a, b := SegmentID{1}, SegmentID{2}
	raw := EncodeGarbage([]SegmentID{b, a, b})
	ids, err := DecodeGarbage(raw)
	if err != nil || !slices.Equal(ids, []SegmentID{a, b}) {
		t.Fatalf("decoded %x, %v; want %x", ids, err, []SegmentID{a, b})
	}
	if ids, err := DecodeGarbage(EncodeGarbage(nil)); err != nil || len(ids) != 0 {
		t.Fatalf("empty list: %x, %v", ids, err)
	}
	for i := range raw {
		bad := slices.Clone(raw)
		bad[i] ^= 0x10
		if _, err := DecodeGarbage(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v, want ErrCorrupt", i, err)
		}
		if _, err := DecodeGarbage(raw[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut to %d bytes: %v, want ErrCorrupt", i, err)
		}
	}
}

// FuzzDecodeGarbage: the decoder never panics, and what it accepts
// encodes back to the same bytes.
func FuzzDecodeGarbage(f *testing.F) {
	f.Add(EncodeGarbage(nil))
	f.Add(EncodeGarbage([]SegmentID{{1}, {2}, {0xff}}))
	f.Add([]byte("CMBG\x01"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ids, err := DecodeGarbage(raw)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if again := EncodeGarbage(ids); string(again) != string(raw) {
			t.Fatalf("%x decodes to %x, which encodes as %x", raw, ids, again)
		}
	})
}

// FuzzGarbageKey: GarbageKey and ParseGarbageKey are inverses.
func FuzzGarbageKey(f *testing.F) {
	for _, s := range keySeeds {
		f.Add(s, "a/c", uint64(5), testID[:])
	}
	f.Fuzz(func(t *testing.T, key, volume string, listed uint64, raw []byte) {
		if v, l, id, ok := ParseGarbageKey(key); ok && GarbageKey(v, l, id) != key {
			t.Fatalf("%q parses to volume %q, listed %d, id %s, which format as %q", key, v, l, id, GarbageKey(v, l, id))
		}
		var id SegmentID
		copy(id[:], raw)
		built := GarbageKey(volume, listed, id)
		if v, l, i, ok := ParseGarbageKey(built); !ok || v != volume || l != listed || i != id {
			t.Fatalf("volume %q, listed %d, id %s format as %q, which parses to %q, %d, %s (%v)", volume, listed, id, built, v, l, i, ok)
		}
	})
}
