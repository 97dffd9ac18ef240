package extension

import (
	"errors"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/segment"
)

// Code is a SQLite result code, primary or extended, with SQLite's values,
// so that any binding can hand it to SQLite as is.
type Code uint16

// The result codes the file layer returns.
const (
	OK             Code = 0
	CodeError      Code = 1
	CodeBusy       Code = 5
	CodeReadOnly   Code = 8
	CodeIOErr      Code = 10
	CodeCorrupt    Code = 11
	CodeNotFound   Code = 12
	CodeCantOpen   Code = 14
	CodeMisuse     Code = 21
	CodeBusySnap   Code = CodeBusy | 2<<8     // SQLITE_BUSY_SNAPSHOT
	CodeIOErrRead  Code = CodeIOErr | 1<<8    // SQLITE_IOERR_READ
	CodeIOErrWrite Code = CodeIOErr | 3<<8    // SQLITE_IOERR_WRITE
	CodeIOErrTrunc Code = CodeIOErr | 6<<8    // SQLITE_IOERR_TRUNCATE
	CodeIOErrLock  Code = CodeIOErr | 15<<8   // SQLITE_IOERR_LOCK
	CodeIOErrClose Code = CodeIOErr | 16<<8   // SQLITE_IOERR_CLOSE
	CodeCantOpenFP Code = CodeCantOpen | 3<<8 // SQLITE_CANTOPEN_FULLPATH
)

// Lock levels, with SQLite's values.
type LockLevel int

const (
	LockNone      LockLevel = 0
	LockShared    LockLevel = 1
	LockReserved  LockLevel = 2
	LockPending   LockLevel = 3
	LockExclusive LockLevel = 4
)

func (l LockLevel) String() string {
	switch l {
	case LockNone:
		return "NONE"
	case LockShared:
		return "SHARED"
	case LockReserved:
		return "RESERVED"
	case LockPending:
		return "PENDING"
	case LockExclusive:
		return "EXCLUSIVE"
	}
	return "LOCK(?)"
}

// Device characteristics (SQLITE_IOCAP_*) of a Cambium main database file.
const (
	IOCapAtomic              = 0x00000001
	IOCapSafeAppend          = 0x00000200
	IOCapSequential          = 0x00000400
	IOCapUndeletableWhenOpen = 0x00000800
	IOCapPowersafeOverwrite  = 0x00001000
)

// DeviceCharacteristics are what a main database file promises SQLite.
//
// Two capabilities are left out on purpose. IOCapAtomic makes SQLite raise
// its default page size to 8 KiB, which doubles what every cold random read
// fetches. IOCapBatchAtomic makes SQLite skip its rollback journal, but
// then it also stops advancing the file change counter (header offset 24),
// which is how other connections learn that their page caches are stale;
// the journal lives in memory anyway, so batch-atomic writes would save
// only a copy of each changed page.
const DeviceCharacteristics = IOCapSafeAppend | IOCapSequential |
	IOCapUndeletableWhenOpen | IOCapPowersafeOverwrite

// coded is an error that carries the result code to report.
type coded struct {
	err  error
	code Code
}

func (c *coded) Error() string { return c.err.Error() }
func (c *coded) Unwrap() error { return c.err }

// withCode tags err with the code to report for it.
func withCode(err error, code Code) error {
	if err == nil {
		return nil
	}
	return &coded{err: err, code: code}
}

// ErrorCode maps an error from this package or the engine to the SQLite
// result code to report, defaulting to def. It is the one place engine
// errors become SQLite codes.
func ErrorCode(err error, def Code) Code {
	var c *coded
	switch {
	case err == nil:
		return OK
	case errors.As(err, &c):
		return c.code
	case errors.Is(err, engine.ErrSnapshotStale):
		return CodeBusySnap
	case errors.Is(err, engine.ErrBusy), errors.Is(err, engine.ErrDirLocked):
		return CodeBusy
	case errors.Is(err, engine.ErrRemoteCorrupt):
		// Damage in the remote, which may wrap the segment's
		// ErrCorrupt too: the local database is sound, so SQLite hears
		// of an I/O error (whose message names the object), not of a
		// malformed database.
		return def
	case errors.Is(err, engine.ErrCorrupt), errors.Is(err, segment.ErrCorrupt):
		return CodeCorrupt
	case errors.Is(err, engine.ErrInvalidName), errors.Is(err, ErrConfig), errors.Is(err, remote.ErrInvalidURL),
		errors.Is(err, engine.ErrRemoteMismatch), errors.Is(err, engine.ErrVersion):
		return CodeCantOpen
	case errors.Is(err, engine.ErrDiverged):
		return CodeReadOnly
	case errors.Is(err, engine.ErrAhead):
		return CodeError
	}
	return def
}
