package manifest

import "errors"

// ErrCorrupt is wrapped by every error that reports bytes which are not a
// valid map (a bad magic or checksum, a truncated body, frames or pages
// that do not add up), and by Merge for maps that cannot follow each other.
// The wrapping error says what was wrong; the caller names the object.
var ErrCorrupt = errors.New("manifest: corrupt")
