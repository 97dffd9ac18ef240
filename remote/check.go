package remote

import (
	"context"
	"fmt"
)

// Argument checks shared by the Store implementations, so that every backend
// refuses the same requests with the same sentinel.

// checkRange refuses a GetRange request that is malformed whatever the
// object's size.
func checkRange(offset, length int64) error {
	if offset < 0 || length < 0 {
		return fmt.Errorf("%w: offset %d, length %d", ErrInvalidRange, offset, length)
	}
	return nil
}

// clampRange applies the GetRange rules to an object of size bytes and
// returns the half-open byte interval [start, end) to return. The request
// must already have passed checkRange.
func clampRange(size, offset, length int64) (start, end int64, err error) {
	if offset > size {
		return 0, 0, fmt.Errorf("%w: offset %d is past the end of a %d byte object", ErrInvalidRange, offset, size)
	}
	return offset, offset + min(length, size-offset), nil
}

// checkList validates opts and returns the number of objects the List call
// may return.
func checkList(opts ListOptions) (limit int, err error) {
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
