package remote

import (
	"context"
	"time"
)

// Store is an object store: a flat namespace of immutable-by-convention objects
// addressed by key. Every implementation (mem, file, s3) and every wrapper
// (counting, latency, fault) satisfies this contract, which the conformance
// suite in remote/remotetest checks.
//
// Keys are non-empty UTF-8 strings of at most MaxKeyLen bytes, made of
// '/'-separated parts; no part is empty, "." or "..", and no byte is a
// control character or a backslash. ValidateKey says why a key is refused;
// every method returns an error wrapping ErrInvalidKey for such a key.
//
// A key must not also be a "directory" of another key: a store may hold
// "a/b" or "a", not both. The file store cannot (it refuses the second with
// ErrInvalidKey) and S3-compatible servers differ (MinIO stores both but
// leaves one out of listings), so callers lay out keys that never do this.
//
// All methods are safe for concurrent use. Byte slices passed in are not
// retained after the call returns, and byte slices returned belong to the
// caller. Every method honours ctx: a cancelled or expired context ends the
// call with an error wrapping ctx.Err().
//
// Which error means what:
//   - ErrNotFound: the key has no object (Get, GetRange, Size).
//   - ErrExists: Create found an object already at the key. If a Create's
//     response is lost and the call is retried (by the caller or by the
//     backend's own retries), the retry may report ErrExists for the caller's
//     own object; callers that must know read the object back and compare.
//   - ErrInvalidKey, ErrInvalidRange: the request itself is malformed.
//   - anything else: the store could not answer (network, disk, server).
//     It may be transient; the caller decides whether to retry.
type Store interface {
	// Get returns the whole object.
	Get(ctx context.Context, key string) ([]byte, error)

	// GetRange returns length bytes starting at offset. It returns fewer
	// bytes only when the object ends first, and an empty slice when offset
	// equals the object size. offset < 0, length < 0 or offset beyond the
	// end of the object is ErrInvalidRange. length 0 returns an empty slice
	// (after checking that the object exists).
	GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error)

	// Size returns the object's size in bytes.
	Size(ctx context.Context, key string) (int64, error)

	// Put writes the object, replacing any object at the key. Readers see
	// either the old object or the new one, never a mixture or a prefix.
	// When Put returns nil the object is durable in the store.
	Put(ctx context.Context, key string, data []byte) error

	// Create writes the object only if no object exists at the key; if one
	// does, it returns ErrExists and leaves it unchanged. Of any number of
	// concurrent Creates of one key, in this process or any other, exactly
	// one succeeds. When Create returns nil the object is durable.
	Create(ctx context.Context, key string, data []byte) error

	// List returns, in ascending byte order of key, the objects whose keys
	// begin with opts.Prefix and sort after opts.StartAfter. It returns at
	// most opts.Limit objects (at most, and by default, MaxListLimit) and
	// costs one request; Truncated says whether more may follow, in which
	// case the caller lists again with StartAfter set to the last key.
	List(ctx context.Context, opts ListOptions) (ListPage, error)

	// Delete removes the object. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// Close releases the store's resources. The store must not be used
	// after Close.
	Close() error
}

// ListOptions selects the objects a List call returns.
type ListOptions struct {
	Prefix     string // only keys that begin with Prefix
	StartAfter string // only keys that sort strictly after StartAfter
	Limit      int    // at most this many objects; 0 means MaxListLimit
}

// ListPage is one page of List results.
type ListPage struct {
	Objects   []ObjectInfo
	Truncated bool // more objects may follow the last one returned
}

// ObjectInfo describes one listed object.
type ObjectInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// MaxListLimit is the largest number of objects one List call returns,
// matching the S3 ListObjectsV2 page size.
const MaxListLimit = 1000

// MaxKeyLen is the longest key in bytes, matching the S3 limit.
const MaxKeyLen = 1024

// ListAll lists every object under prefix, calling List as many times as
// needed. It is for tools and tests; hot paths page through List themselves
// so that they can stop early.
func ListAll(ctx context.Context, s Store, prefix string) ([]ObjectInfo, error) {
	var all []ObjectInfo
	opts := ListOptions{Prefix: prefix}
	for {
		page, err := s.List(ctx, opts)
		if err != nil {
			return all, err
		}
		all = append(all, page.Objects...)
		if !page.Truncated || len(page.Objects) == 0 {
			return all, nil
		}
		opts.StartAfter = page.Objects[len(page.Objects)-1].Key
	}
}
