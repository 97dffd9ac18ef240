package commitlog

import "errors"

var (
	// ErrCorrupt is wrapped by Open's error when the position record fails
	// its checks, or an entry that is whole is not a Pebble batch. The
	// wrapping error names the record or entry. (A torn entry is no
	// corruption: it is the end of the log.)
	ErrCorrupt = errors.New("commitlog: corrupt")

	// ErrClosed is wrapped by the error of a Write that waited for the file
	// to grow while the log closed.
	ErrClosed = errors.New("the commit log is closed")

	// ErrOptions is returned by Open for Options that are missing or out of
	// range.
	ErrOptions = errors.New("commitlog: invalid options")
)
