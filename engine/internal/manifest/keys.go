package manifest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Each key builder below is followed by its parser, which accepts exactly
// the keys the builder formats: the layout table in doc.go has one reader.

// VolumesPrefix is the prefix of every volume's objects.
const VolumesPrefix = "v/"

// VolumePrefix returns the prefix of volume's objects: its name escaped
// into a single key part, so that no volume's prefix is another's.
func VolumePrefix(volume string) string { return VolumesPrefix + url.PathEscape(volume) + "/" }

// ParseVolumeKey splits a key under a volume's prefix into the volume's
// name and the rest of the key: key == VolumePrefix(volume)+rest. A key
// whose name part is not escaped as VolumePrefix escapes it is refused.
// Whether the name is one a volume may have is the caller's rule.
func ParseVolumeKey(key string) (volume, rest string, ok bool) {
	tail, ok := strings.CutPrefix(key, VolumesPrefix)
	if !ok {
		return "", "", false
	}
	escaped, rest, ok := strings.Cut(tail, "/")
	if !ok {
		return "", "", false
	}
	volume, err := url.PathUnescape(escaped)
	if err != nil || url.PathEscape(volume) != escaped {
		return "", "", false
	}
	return volume, rest, true
}

// CommitPrefix returns the prefix of volume's remote commits; listed, they
// come in the order of their parents.
func CommitPrefix(volume string) string { return VolumePrefix(volume) + "c/" }

// CommitKey returns the key of volume's remote commit from version parent.
func CommitKey(volume string, parent uint64) string {
	return fmt.Sprintf("%s%016x", CommitPrefix(volume), parent)
}

// ParseCommitKey returns the volume and parent version of a key CommitKey
// formats.
func ParseCommitKey(key string) (volume string, parent uint64, ok bool) {
	volume, rest, ok := ParseVolumeKey(key)
	if !ok {
		return "", 0, false
	}
	digits, ok := strings.CutPrefix(rest, "c/")
	if !ok {
		return "", 0, false
	}
	if parent, ok = parseHex(digits, 16); !ok {
		return "", 0, false
	}
	return volume, parent, true
}

// RollupPrefix returns the prefix of volume's rollups.
func RollupPrefix(volume string) string { return VolumePrefix(volume) + "r/" }

// RollupKey returns the key of volume's rollup of level level covering
// the commits start+1..start+2^level.
func RollupKey(volume string, level uint8, start uint64) string {
	return fmt.Sprintf("%s%02x/%016x", RollupPrefix(volume), level, start)
}

// ParseRollupKey returns the volume, level and start of a key RollupKey
// formats. The level is not checked against MaxRollupLevel: that is the
// map's to say.
func ParseRollupKey(key string) (volume string, level uint8, start uint64, ok bool) {
	volume, rest, ok := ParseVolumeKey(key)
	if !ok {
		return "", 0, 0, false
	}
	rest, ok = strings.CutPrefix(rest, "r/")
	if !ok {
		return "", 0, 0, false
	}
	l, s, ok := strings.Cut(rest, "/")
	if !ok {
		return "", 0, 0, false
	}
	lv, ok1 := parseHex(l, 2)
	sv, ok2 := parseHex(s, 16)
	if !ok1 || !ok2 {
		return "", 0, 0, false
	}
	return volume, uint8(lv), sv, true
}

// CheckpointPrefix returns the prefix of volume's checkpoints; listed,
// they come in the order of their versions.
func CheckpointPrefix(volume string) string { return VolumePrefix(volume) + "k/" }

// CheckpointKey returns the key of volume's checkpoint of version version.
func CheckpointKey(volume string, version uint64) string {
	return fmt.Sprintf("%s%016x", CheckpointPrefix(volume), version)
}

// ParseCheckpointKey returns the volume and version of a key CheckpointKey
// formats.
func ParseCheckpointKey(key string) (volume string, version uint64, ok bool) {
	volume, rest, ok := ParseVolumeKey(key)
	if !ok {
		return "", 0, false
	}
	digits, ok := strings.CutPrefix(rest, "k/")
	if !ok {
		return "", 0, false
	}
	if version, ok = parseHex(digits, 16); !ok {
		return "", 0, false
	}
	return volume, version, true
}

// GarbagePrefix returns the prefix of volume's garbage lists; listed,
// they come in the order of the listings they record.
func GarbagePrefix(volume string) string { return VolumePrefix(volume) + "g/" }

// GarbageKey returns the key of a garbage list of volume recording the
// listing begun at unix nanoseconds listed; id, random, keeps two
// collectors' lists apart.
func GarbageKey(volume string, listed uint64, id SegmentID) string {
	return fmt.Sprintf("%s%016x-%s", GarbagePrefix(volume), listed, id)
}

// ParseGarbageKey returns the volume, listing time and ID of a key
// GarbageKey formats.
func ParseGarbageKey(key string) (volume string, listed uint64, id SegmentID, ok bool) {
	volume, rest, ok := ParseVolumeKey(key)
	if !ok {
		return "", 0, SegmentID{}, false
	}
	rest, ok = strings.CutPrefix(rest, "g/")
	if !ok {
		return "", 0, SegmentID{}, false
	}
	digits, idHex, ok := strings.Cut(rest, "-")
	if !ok {
		return "", 0, SegmentID{}, false
	}
	if listed, ok = parseHex(digits, 16); !ok {
		return "", 0, SegmentID{}, false
	}
	id, err := ParseSegmentID(idHex)
	if err != nil {
		return "", 0, SegmentID{}, false
	}
	return volume, listed, id, true
}

// SegmentPrefix returns the prefix of volume's segments.
func SegmentPrefix(volume string) string { return VolumePrefix(volume) + "s/" }

// SegmentKey returns the key of volume's segment id.
func SegmentKey(volume string, id SegmentID) string { return SegmentPrefix(volume) + id.String() }

// ParseSegmentKey returns the volume and segment ID of a key SegmentKey
// formats.
func ParseSegmentKey(key string) (volume string, id SegmentID, ok bool) {
	volume, rest, ok := ParseVolumeKey(key)
	if !ok {
		return "", SegmentID{}, false
	}
	s, ok := strings.CutPrefix(rest, "s/")
	if !ok {
		return "", SegmentID{}, false
	}
	id, err := ParseSegmentID(s)
	if err != nil {
		return "", SegmentID{}, false
	}
	return volume, id, true
}

// segmentIDLen is the length of a SegmentID in bytes.
const segmentIDLen = 16

// SegmentID names a segment object: random, so that no two pushes, even
// of diverged writers, name the same object.
type SegmentID [segmentIDLen]byte

// NewSegmentID returns a random SegmentID.
func NewSegmentID() (SegmentID, error) {
	var id SegmentID
	_, err := rand.Read(id[:])
	return id, err
}

// String returns the ID as 32 lower-case hex digits.
func (id SegmentID) String() string { return hex.EncodeToString(id[:]) }

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

// parseHex parses exactly n lower-case hex digits, as %0<n>x formats
// them.
func parseHex(s string, n int) (uint64, bool) {
	if len(s) != n {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}
