package remote

import (
	"fmt"
	"strings"
)

// ValidateKey reports whether key obeys the key rules in the Store
// documentation. The error wraps ErrInvalidKey and says which rule failed.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key is %d bytes, longer than %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %q has control byte 0x%02x at offset %d", ErrInvalidKey, key, c, i)
		}
		if c == '\\' {
			return fmt.Errorf("%w: %q has a backslash at offset %d", ErrInvalidKey, key, i)
		}
	}
	for part := range strings.SplitSeq(key, "/") {
		switch part {
		case "":
			return fmt.Errorf("%w: %q has an empty path part", ErrInvalidKey, key)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q path part", ErrInvalidKey, key, part)
		}
	}
	return nil
}

// validatePrefix checks a List prefix. A prefix need not be a whole key:
// it may be empty, end in '/', or end in part of a key part ("a/.h" matches
// "a/.hidden"), so only the parts before the last are held to the key rules.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxKeyLen {
		return fmt.Errorf("%w: prefix is %d bytes, longer than %d", ErrInvalidKey, len(prefix), MaxKeyLen)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("%w: prefix %q has byte 0x%02x at offset %d", ErrInvalidKey, prefix, c, i)
		}
	}
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if err := ValidateKey(prefix[:i]); err != nil {
			return fmt.Errorf("prefix %q: %w", prefix, err)
		}
	}
	return nil
}
