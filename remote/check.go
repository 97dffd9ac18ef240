package remote

import (
	"context"
	"fmt"
)

// Argument checks shared by the Store implementations, here and in backend
// packages such as remote/s3, so that every backend refuses the same
// requests with the same sentinel.

// ValidateRange refuses a GetRange request that is malformed whatever the
// object's size: a negative offset or length. The error wraps
// ErrInvalidRange.
func ValidateRange(offset, length int64) error {
	if offset < 0 || length < 0 {
		return fmt.Errorf("%w: offset %d, length %d", ErrInvalidRange, offset, length)
	}
	return nil
}

// ClampRange applies the GetRange rules to an object of size bytes and
// returns the half-open byte interval [start, end) to return: ErrInvalidRange
// for an offset past the end, fewer bytes than asked near the end. The
// request must already have passed ValidateRange.
func ClampRange(size, offset, length int64) (start, end int64, err error) {
	if offset > size {
		return 0, 0, fmt.Errorf("%w: offset %d is past the end of a %d byte object", ErrInvalidRange, offset, size)
	}
	return offset, offset + min(length, size-offset), nil
}

// ListLimit validates opts and returns the number of objects a List call
// may return: opts.Limit, or MaxListLimit when that is zero or larger. A bad
// prefix fails with ErrInvalidKey.
func ListLimit(opts ListOptions) (int, error) {
	if err := validatePrefix(opts.Prefix); err != nil {
		return 0, err
	}
	switch {
	case opts.Limit < 0:
		return 0, fmt.Errorf("negative list limit %d", opts.Limit)
	case opts.Limit == 0 || opts.Limit > MaxListLimit:
		return MaxListLimit, nil
	}
	return opts.Limit, nil
}

// checkCall refuses a call whose context is already done or whose key is
// invalid.
func checkCall(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ValidateKey(key)
}
