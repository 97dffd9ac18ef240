package manifest

import (
	"strings"
	"testing"
)

var testID = SegmentID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}

// The layout in doc.go, byte for byte.
func TestKeys_Format(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ got, want string }{
		{VolumePrefix("tenant/42.db"), "v/tenant%2F42.db/"},
		{CommitPrefix("a"), "v/a/c/"},
		{CommitKey("a/c", 5), "v/a%2Fc/c/0000000000000005"},
		{CommitKey("a", 1<<64-1), "v/a/c/ffffffffffffffff"},
		{RollupPrefix("a"), "v/a/r/"},
		{RollupKey("x", 3, 255), "v/x/r/03/00000000000000ff"},
		{RollupKey("x", 255, 0), "v/x/r/ff/0000000000000000"},
		{SegmentPrefix("a"), "v/a/s/"},
		{SegmentKey("a b", testID), "v/a%20b/s/0123456789abcdef0123456789abcdef"},
		{testID.String(), "0123456789abcdef0123456789abcdef"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	// No volume's objects fall under another's prefix.
	if strings.HasPrefix(CommitKey("a/c", 0), VolumePrefix("a")) {
		t.Errorf("%q is under %q", CommitKey("a/c", 0), VolumePrefix("a"))
	}
}

// The parsers give back what the builders took, and refuse every key the
// builders cannot have formatted.
func TestKeys_Parse(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		if v, rest, ok := ParseVolumeKey("v/a%2Fc/c/x"); !ok || v != "a/c" || rest != "c/x" {
			t.Errorf("ParseVolumeKey: %q %q %v", v, rest, ok)
		}
		if v, p, ok := ParseCommitKey("v/a%2Fc/c/0000000000000005"); !ok || v != "a/c" || p != 5 {
			t.Errorf("ParseCommitKey: %q %d %v", v, p, ok)
		}
		if v, l, s, ok := ParseRollupKey("v/x/r/03/00000000000000ff"); !ok || v != "x" || l != 3 || s != 255 {
			t.Errorf("ParseRollupKey: %q %d %d %v", v, l, s, ok)
		}
		if v, id, ok := ParseSegmentKey("v/a%20b/s/0123456789abcdef0123456789abcdef"); !ok || v != "a b" || id != testID {
			t.Errorf("ParseSegmentKey: %q %s %v", v, id, ok)
		}
	})
	t.Run("Refused", func(t *testing.T) {
		notVolume := []string{
			"", "v/", "v/a", "x/a/c/0000000000000005", "/v/a/c/0000000000000005",
			"v/%61/c/0000000000000005",   // "a" escaped where VolumePrefix does not
			"v/a%2fc/c/0000000000000005", // lower-case escape
			"v/a%zz/c/0000000000000005",  // no escape at all
		}
		for _, key := range notVolume {
			if v, rest, ok := ParseVolumeKey(key); ok {
				t.Errorf("ParseVolumeKey(%q) = %q, %q", key, v, rest)
			}
		}
		for _, key := range append(notVolume,
			"v/a/c/000000000000000A", // upper-case hex
			"v/a/c/5", "v/a/c/00000000000000005", "v/a/c/+000000000000005", "v/a/c/0000000000000005/",
			"v/a/c/c/0000000000000005", // "a/c" unescaped
			"v/a/r/3/00000000000000ff", "v/a/r/03/ff", "v/a/r/03", "v/a/r/03/00000000000000ff/", "v/a/r/0x/00000000000000ff",
			"v/a/s/0123456789abcdef0123456789abcde", "v/a/s/0123456789ABCDEF0123456789abcdef", "v/a/s/0123456789abcdef0123456789abcdef0",
		) {
			if v, p, ok := ParseCommitKey(key); ok {
				t.Errorf("ParseCommitKey(%q) = %q, %d", key, v, p)
			}
			if v, l, s, ok := ParseRollupKey(key); ok {
				t.Errorf("ParseRollupKey(%q) = %q, %d, %d", key, v, l, s)
			}
			if v, id, ok := ParseSegmentKey(key); ok {
				t.Errorf("ParseSegmentKey(%q) = %q, %s", key, v, id)
			}
		}
	})
}

// keySeeds are keys of every kind, good and nearly good.
var keySeeds = []string{
	"v/a/c/0000000000000005", "v/a%2Fc/c/ffffffffffffffff", "v/a/c/000000000000000A",
	"v/x/r/03/00000000000000ff", "v/x/r/3/00000000000000ff",
	"v/a%20b/s/0123456789abcdef0123456789abcdef", "v/a/s/0123456789ABCDEF0123456789abcdef",
	"v/%61/c/0000000000000005", "v//c/0000000000000000", "v/tenant%2F42.db/",
}

// FuzzParseSegmentID: an ID formats to text that parses back to it, and
// text that parses is the text its ID formats to.
func FuzzParseSegmentID(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef", testID[:])
	f.Add("0123456789ABCDEF0123456789abcdef", []byte{})
	f.Add("", []byte{0xff})
	f.Fuzz(func(t *testing.T, s string, raw []byte) {
		if id, err := ParseSegmentID(s); err == nil && id.String() != s {
			t.Fatalf("segment id %q formats as %q", s, id.String())
		}
		var id SegmentID
		copy(id[:], raw)
		if again, err := ParseSegmentID(id.String()); err != nil || again != id {
			t.Fatalf("segment id %x formats as %q, which parses to %x (%v)", id[:], id.String(), again[:], err)
		}
	})
}

// FuzzVolumeKey: VolumePrefix and ParseVolumeKey are inverses, for any
// name and any rest of key.
func FuzzVolumeKey(f *testing.F) {
	for _, s := range keySeeds {
		f.Add(s, "tenant/42.db", "c/0000000000000005")
	}
	f.Add("v/%/x", "%", "")
	f.Add("v/\xff/", "\xff", "/")
	f.Fuzz(func(t *testing.T, key, volume, rest string) {
		if v, r, ok := ParseVolumeKey(key); ok && VolumePrefix(v)+r != key {
			t.Fatalf("%q parses to volume %q, rest %q, which format as %q", key, v, r, VolumePrefix(v)+r)
		}
		built := VolumePrefix(volume) + rest
		if v, r, ok := ParseVolumeKey(built); !ok || v != volume || r != rest {
			t.Fatalf("volume %q, rest %q format as %q, which parses to %q, %q (%v)", volume, rest, built, v, r, ok)
		}
	})
}

// FuzzCommitKey: CommitKey and ParseCommitKey are inverses.
func FuzzCommitKey(f *testing.F) {
	for _, s := range keySeeds {
		f.Add(s, "a/c", uint64(5))
	}
	f.Fuzz(func(t *testing.T, key, volume string, parent uint64) {
		if v, p, ok := ParseCommitKey(key); ok && CommitKey(v, p) != key {
			t.Fatalf("%q parses to volume %q, parent %d, which format as %q", key, v, p, CommitKey(v, p))
		}
		built := CommitKey(volume, parent)
		if v, p, ok := ParseCommitKey(built); !ok || v != volume || p != parent {
			t.Fatalf("volume %q, parent %d format as %q, which parses to %q, %d (%v)", volume, parent, built, v, p, ok)
		}
	})
}

// FuzzRollupKey: RollupKey and ParseRollupKey are inverses.
func FuzzRollupKey(f *testing.F) {
	for _, s := range keySeeds {
		f.Add(s, "x", uint8(3), uint64(255))
	}
	f.Fuzz(func(t *testing.T, key, volume string, level uint8, start uint64) {
		if v, l, s, ok := ParseRollupKey(key); ok && RollupKey(v, l, s) != key {
			t.Fatalf("%q parses to volume %q, level %d, start %d, which format as %q", key, v, l, s, RollupKey(v, l, s))
		}
		built := RollupKey(volume, level, start)
		if v, l, s, ok := ParseRollupKey(built); !ok || v != volume || l != level || s != start {
			t.Fatalf("volume %q, level %d, start %d format as %q, which parses to %q, %d, %d (%v)", volume, level, start, built, v, l, s, ok)
		}
	})
}

// FuzzSegmentKey: SegmentKey and ParseSegmentKey are inverses.
func FuzzSegmentKey(f *testing.F) {
	for _, s := range keySeeds {
		f.Add(s, "a b", testID[:])
	}
	f.Fuzz(func(t *testing.T, key, volume string, raw []byte) {
		if v, id, ok := ParseSegmentKey(key); ok && SegmentKey(v, id) != key {
			t.Fatalf("%q parses to volume %q, segment %s, which format as %q", key, v, id, SegmentKey(v, id))
		}
		var id SegmentID
		copy(id[:], raw)
		built := SegmentKey(volume, id)
		if v, got, ok := ParseSegmentKey(built); !ok || v != volume || got != id {
			t.Fatalf("volume %q, segment %s format as %q, which parses to %q, %s (%v)", volume, id, built, v, got, ok)
		}
	})
}
