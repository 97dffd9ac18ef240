package segment

import "errors"

var (
	// ErrCorrupt is wrapped by every error that reports bytes which are not
	// a valid segment, or not the part of one that was asked for: a bad
	// magic or checksum, a truncated object or frame, a length that does
	// not add up. The wrapping error says what was wrong.
	ErrCorrupt = errors.New("segment: corrupt")

	// ErrPageSize is returned for a page size SQLite cannot use (not a
	// power of two in 512..65536), or a page image of the wrong length.
	ErrPageSize = errors.New("segment: bad page size")

	// ErrOutOfOrder is returned by Writer.Add for page 0, or for a page
	// number not greater than the previous one (which also refuses
	// duplicates).
	ErrOutOfOrder = errors.New("segment: page out of order")

	// ErrFinished is returned by a Writer used after Finish, or after an
	// earlier write to its output failed.
	ErrFinished = errors.New("segment: writer finished")

	// ErrNoPage is returned when a segment does not hold the page asked for.
	ErrNoPage = errors.New("segment: page not in segment")

	// ErrOptions is returned for Options that are out of range.
	ErrOptions = errors.New("segment: invalid options")
)
