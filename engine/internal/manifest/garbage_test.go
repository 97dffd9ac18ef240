package manifest

import (
	"errors"
	"slices"
	"testing"
)

// TestGarbage: a garbage list decodes to the keys encoded, sorted and
// without repeats; any damage is ErrCorrupt.
func TestGarbage(t *testing.T) {
	a, b := "k/0000000000000007", "s/"+testID.String()
	raw := EncodeGarbage([]string{b, a, b})
	keys, err := DecodeGarbage(raw)
	if err != nil || !slices.Equal(keys, []string{a, b}) {
		t.Fatalf("decoded %q, %v; want %q", keys, err, []string{a, b})
	}
	if keys, err := DecodeGarbage(EncodeGarbage(nil)); err != nil || len(keys) != 0 {
		t.Fatalf("empty list: %q, %v", keys, err)
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
	f.Add(EncodeGarbage([]string{"k/0000000000000001", "s/" + testID.String()}))
	f.Add([]byte("CMBG\x01"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		keys, err := DecodeGarbage(raw)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if again := EncodeGarbage(keys); string(again) != string(raw) {
			t.Fatalf("%x decodes to %q, which encodes as %x", raw, keys, again)
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
