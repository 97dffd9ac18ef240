package engine

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cambiumdb/cambium/segment"
)

// PageNo is a page number; the first page is 1.
type PageNo = segment.PageNo

// Version is a volume version. Version 0 is the empty volume; each commit
// makes the next.
type Version uint64

// String returns the version in decimal.
func (v Version) String() string { return strconv.FormatUint(uint64(v), 10) }

// ParseVersion parses a decimal version.
func ParseVersion(s string) (Version, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse version %q: want a whole number from 0", s)
	}
	return Version(n), nil
}

// MaxNameLen is the longest volume name, in bytes: escaped for an object
// key (up to three bytes a byte), it still fits the 1024-byte key limit.
const MaxNameLen = 255

// ValidateName reports whether name can name a volume: 1 to MaxNameLen
// bytes of UTF-8, no control bytes and no backslash, '/'-separated parts
// that are neither empty nor "." nor "..". A '/' makes tenant namespaces:
// "acme/users.db".
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %q has control byte 0x%02x at offset %d", ErrInvalidName, name, c, i)
		} else if c == '\\' {
			return fmt.Errorf("%w: %q has a backslash at offset %d", ErrInvalidName, name, i)
		}
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidName, name)
	}
	for part := range strings.SplitSeq(name, "/") {
		switch part {
		case "":
			return fmt.Errorf("%w: %q has an empty path part", ErrInvalidName, name)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q path part", ErrInvalidName, name, part)
		}
	}
	return nil
}
