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
	// remote, the version this volume's next push would have claimed, and
	// afterwards by writes and pulls, until Reset. The volume's local
	// commits are kept.
	ErrDiverged = errors.New("engine: volume has diverged from the remote")

	// ErrRemoteCorrupt is returned when an object read from the remote
	// fails its checks, or the remote's log is not what it must be. The
	// wrapping error names the object.
	ErrRemoteCorrupt = errors.New("engine: corrupt remote data")

	// ErrNoRemote is returned by replication calls on a volume with no
	// remote attached.
	ErrNoRemote = errors.New("engine: no remote attached (set remote=URL or CAMBIUM_REMOTE)")

	// ErrRemoteMismatch is returned when a volume is attached to another
	// remote than the one it replicates with.
	ErrRemoteMismatch = errors.New("engine: volume replicates with another remote")

	// ErrAhead is returned by Pull on a volume with local commits that are
	// not in the remote yet.
	ErrAhead = errors.New("engine: volume has unpushed commits")

	// ErrVersion is returned for a version a volume does not have.
	ErrVersion = errors.New("engine: no such version")

	// ErrCollected is returned for a version, or a page image of one,
	// that the remote's garbage collection deleted: the version is older
	// than the retention window keeps. The wrapping error names the
	// version and the oldest one the remote keeps, when it can.
	ErrCollected = errors.New("engine: version no longer retained by the remote")

	// ErrOwnerLost is returned for a snapshot or transaction of a process
	// that shares a data directory (see Options.Exclusive) when the
	// process that owned the directory ended while it was open: the next
	// one works, on the new owner.
	ErrOwnerLost = errors.New("engine: the process that owned the data directory went away")

	// ErrOptions is returned by Open for Options out of range.
	ErrOptions = errors.New("engine: invalid options")
)
