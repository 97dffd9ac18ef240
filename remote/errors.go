package remote

import "errors"

var (
	// ErrNotFound is returned by Get, GetRange and Size when no object
	// exists at the key.
	ErrNotFound = errors.New("remote: object not found")

	// ErrExists is returned by Create when an object already exists at the
	// key. The existing object is unchanged.
	ErrExists = errors.New("remote: object already exists")

	// ErrInvalidKey is returned for a key that breaks the rules in the
	// Store documentation. The wrapping error says which rule.
	ErrInvalidKey = errors.New("remote: invalid key")

	// ErrInvalidRange is returned by GetRange for a negative offset or
	// length, or an offset past the end of the object.
	ErrInvalidRange = errors.New("remote: invalid range")

	// ErrInvalidURL is returned by Open for a store URL it cannot use. The
	// wrapping error names the bad part.
	ErrInvalidURL = errors.New("remote: invalid store URL")

	// ErrInjected is returned by a FaultStore for a request it was told to
	// fail. Tests use it to tell injected failures from real ones.
	ErrInjected = errors.New("remote: injected fault")
)
