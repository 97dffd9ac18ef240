// Command loadable is libcambium.so, Cambium as a loadable SQLite extension
// for any host that loads them: the sqlite3 shell, Python's sqlite3 module,
// and other C programs. Build it with
//
//	make extension    # go build -buildmode=c-shared -o build/libcambium.so ./extension/loadable
//
// and load it once per process, from any connection:
//
//	sqlite> .load build/libcambium
//	sqlite> .open file:tenant/42.db?vfs=cambium&dir=/var/lib/cambium
//
// Loading registers the VFS "cambium" (the default VFS too when
// CAMBIUM_MAKE_DEFAULT=1) and keeps the library loaded
// (SQLITE_OK_LOAD_PERMANENTLY); loading it again, from another connection,
// does nothing more. The library exports only its entry points,
// sqlite3_cambium_init and sqlite3_extension_init.
//
// It is the same database as the Go VFS (extension/govfs): the C shim
// (shim.c) only marshals SQLite's VFS calls to package extension, which owns
// the lock protocol, transactions, pragmas and configuration. Main database
// files are volumes, configured by the URI parameters and CAMBIUM_*
// environment variables that extension.ParseConfig reads; everything else
// SQLite opens (journals, temporary files) is an extension.MemFile, except a
// super-journal, which is refused (extension.ErrSuperJournal); every
// connection opened on a volume after the extension loaded gets
// journal_mode=MEMORY (an auto-extension), so that SQLite keeps its
// rollback journal in its own memory (PRAGMA journal_mode reports
// "memory"). The main database is not opened with SQLITE_OPEN_MEMORY,
// which would keep VACUUM from changing its page size. Calls
// that are not about files (randomness, sleep, time, dlopen) go to the
// default VFS that was registered when the extension first loaded.
//
// Concurrency: SQLite may call from any thread; each file is used by one
// connection, one call at a time, and is referenced from C by a
// runtime/cgo.Handle. A panic in Go is recovered in the exported function
// that SQLite called, logged to stderr with its stack, and returned as
// SQLITE_IOERR. Errors that SQLite would report only by their code (an open
// that fails, an I/O error, corruption) are logged to stderr and to
// sqlite3_log with Cambium's message; a refused pragma's message is the
// statement's error.
//
// Limits: a Go program must use the Go VFS, not load this library (two Go
// runtimes in one process deadlock); a child forked after the parent used
// the extension must not use it (the Go runtime's threads do not survive
// fork); the Go runtime stays loaded until the process exits.
package main
