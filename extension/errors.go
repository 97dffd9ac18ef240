package extension

import (
	"errors"
	"fmt"
)

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

// ErrSuperJournal is returned when SQLite opens a super-journal through the
// cambium VFS. It does for a transaction that writes two or more attached
// databases with rollback journals on a connection whose main database is
// a volume: plain files, and attached volumes, whose journal mode is
// SQLite's default (the adapters set MEMORY on the main database only, and
// a volume is not opened as a database in memory, whose page size VACUUM
// would never change). The super-journal is opened with the main
// database's VFS, where it would live in memory, while each plain file's
// journal names it; a crash in the middle of COMMIT would then find no
// super-journal on disk and leave a plain file half written.
var ErrSuperJournal = withCode(fmt.Errorf("%w: a transaction that writes two or more attached databases with a rollback journal "+
	"(plain files, and attached volumes whose journal_mode is not MEMORY) needs a super-journal on disk, which a connection "+
	"whose main database is a Cambium volume cannot keep; run PRAGMA NAME.journal_mode=MEMORY on an attached volume, "+
	"write each plain file in its own transaction, or attach them to a connection whose main database is a plain file", ErrUnsupported), CodeCantOpen)
