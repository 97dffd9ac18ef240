package extension

import "errors"

var (
	// ErrConfig is returned for a malformed or unknown setting; the
	// wrapping error names the setting and says why.
	ErrConfig = errors.New("cambium: bad setting")

	// ErrReadOnly is returned for a write to a database opened read-only.
	ErrReadOnly = errors.New("cambium: database is read-only")

	// ErrUnsupported is returned for a SQLite feature Cambium refuses, with
	// the reason in the wrapping error.
	ErrUnsupported = errors.New("cambium: unsupported")
)
