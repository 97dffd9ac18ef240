package engine

import "errors"

var (
	// ErrDirLocked is returned by Open when another process holds the
	// data directory. The wrapping error names the directory and, when it
	// can, the process.
	ErrDirLocked = errors.New("engine: data directory in use by another process")

	// ErrBusy is returned by Volume.Begin when another write transaction
	// is open on the volume.
	ErrBusy = errors.New("engine: volume has another writer")

	// ErrSnapshotStale is returned by Volume.Begin when the snapshot given
	// is not the volume's newest: a write based on it would lose the
	// commits made since.
	ErrSnapshotStale = errors.New("engine: snapshot is not the newest version")

	// ErrInvalidName is returned for a volume name that breaks the rules
	// in ValidateName; the wrapping error says which.
	ErrInvalidName = errors.New("engine: invalid volume name")

	// ErrPageSize is returned for a page size SQLite cannot use, or a page
	// image whose length is not the volume's page size.
	ErrPageSize = errors.New("engine: bad page size")

	// ErrCorrupt is returned when a stored record or page value fails its
	// checks. The wrapping error names the record.
	ErrCorrupt = errors.New("engine: corrupt local data")

	// ErrTxnDone is returned by a Txn used after Commit or Rollback.
	ErrTxnDone = errors.New("engine: transaction already finished")

	// ErrClosed is returned by an Engine, Volume or Snapshot used after
	// the Engine was closed.
	ErrClosed = errors.New("engine: closed")

	// ErrDiverged is returned by Push when another writer claimed, in the
	// remote, the version this volume's next push would have claimed. The
	// volume's local commits are kept.
	ErrDiverged = errors.New("engine: volume has diverged from the remote")

	// ErrOptions is returned by Open for Options out of range.
	ErrOptions = errors.New("engine: invalid options")
)
