// Package govfs registers Cambium as the SQLite VFS "cambium" with
// github.com/ncruces/go-sqlite3, in pure Go (no cgo). Import it for its
// side effect and open databases with the VFS in the URI:
//
//	import (
//		"database/sql"
//		_ "github.com/cambiumdb/cambium/extension/govfs"
//		_ "github.com/ncruces/go-sqlite3/driver"
//	)
//
//	db, err := sql.Open("sqlite3", "file:tenant/42.db?vfs=cambium&dir=/var/lib/cambium")
//
// The file name is the volume name ('/' separates tenant namespaces; no
// empty, "." or ".." parts). URI parameters, each falling back to its
// environment variable:
//
//	dir      CAMBIUM_DIR     data directory (default $XDG_DATA_HOME/cambium
//	                         or ~/.local/share/cambium)
//	remote   CAMBIUM_REMOTE  object store to replicate with: file:///path,
//	                         s3://bucket/prefix (credentials, region and
//	                         endpoint from the AWS chain), mem://name
//	sync     CAMBIUM_SYNC    manual (default) or an interval such as 5s:
//	                         push (writer) or pull (reader) in the background;
//	                         a writer also collects its remote now and then
//	retain   CAMBIUM_RETAIN  how long past versions stay restorable in the
//	                         remote: a duration (default 24h, 0s for the
//	                         newest only) or forever; the local history of
//	                         the volume follows the same window
//	min_age  CAMBIUM_MIN_AGE the age under which garbage collection deletes
//	                         no remote object (default 15m, at least 1m)
//	warm     CAMBIUM_WARM    on (default) or off: after a pull, fetch again
//	                         in the background the changed pages this
//	                         replica had stored
//	cache_budget  CAMBIUM_CACHE_BUDGET
//	                         bound the disk of the page images the data
//	                         directory stores (every volume), stubs and
//	                         records kept for them included, to a size such
//	                         as 512MiB or 20GiB
//	                         (default unbounded): past it, pages safe in the
//	                         remote are evicted, least recently read first,
//	                         and fetched again when read; unpushed pages
//	                         never are
//	version  (URI only)      open read-only at that version: time travel
//	at       (URI only)      open read-only at the newest version committed
//	                         at or before an RFC 3339 time: restore by time
//
// An unknown URI parameter is an error. retain and warm are also settings
// of the volume, shared by its connections in the process: the last to
// open it sets them. cache_budget belongs to the data directory: the first
// connection of the process to open it sets it, and one that asks for
// another is refused. A volume that exists only in the
// remote opens at the remote's newest version without downloading pages:
// each is fetched when SQLite first reads it.
//
// A program that uses s3:// remotes also imports the S3 backend, which this
// package leaves out so that programs without S3 do not link the AWS SDK:
//
//	import _ "github.com/cambiumdb/cambium/remote/s3"
//
// A file path (it starts with '/') is not a volume name: ATTACH and VACUUM
// INTO name a plain file by a URI with SQLite's own VFS,
// 'file:/path/x.db?vfs=os'. A transaction that writes two or more attached
// plain files is refused (extension.ErrSuperJournal says why).
//
// Journals and temporary files live in memory: the engine makes commits
// durable, per PRAGMA synchronous (FULL, the default: fsync before COMMIT
// returns; NORMAL and OFF: the commit survives a crash of the process but
// not of the machine). Each connection opened on a volume gets
// journal_mode=MEMORY; journal_mode=WAL is answered with it, as SQLite
// answers where WAL cannot be. Any page size works, set before the first
// table or changed later by PRAGMA page_size=N and VACUUM, as with a plain
// file: the volume's version after the VACUUM has pages of the new size,
// older versions keep theirs. PRAGMA cambium_version,
// cambium_status and cambium_stats report on the volume; cambium_push,
// cambium_pull, cambium_fetch, cambium_hydrate and cambium_reset replicate
// it, and cambium_gc collects its remote (see the extension package).
//
// Every connection of the process shares one engine per data directory;
// other processes may open the same directory at once (the first to open
// it serves the others: see the engine's package doc).
package govfs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/vfs"

	"github.com/cambiumdb/cambium/extension"
)

// Name is the VFS name to use in URIs: vfs=cambium.
const Name = "cambium"

func init() {
	vfs.Register(Name, cambiumVFS{})
	sqlite3.AutoExtension(journalInMemory)
}

// journalInMemory sets the journal mode of a connection whose main
// database is a Cambium volume to MEMORY: the pager keeps its rollback
// journal itself, as the VFS's in-memory files would, without a VFS call
// per journal write (a fifth of a small commit's time). The pager must not
// learn it from SQLITE_OPEN_MEMORY, which would also make it take the
// database for one held in memory, whose page size VACUUM never changes.
func journalInMemory(c *sqlite3.Conn) error {
	f := c.Filename("main").DatabaseFile()
	for {
		switch w := f.(type) {
		case *mainFile:
			return c.Exec("PRAGMA main.journal_mode=" + extension.JournalMode)
		case interface{ Unwrap() vfs.File }: // ncruces's checksum layer
			f = w.Unwrap()
		default:
			return nil
		}
	}
}

type cambiumVFS struct{}

var _ vfs.VFSFilename = cambiumVFS{}

func (cambiumVFS) Open(name string, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	return nil, flags, sqlite3.CANTOPEN // SQLite calls OpenFilename
}

func (cambiumVFS) OpenFilename(name *vfs.Filename, flags vfs.OpenFlag) (f vfs.File, _ vfs.OpenFlag, err error) {
	defer recoverInto(&err, "open")
	if flags&vfs.OPEN_SUPER_JOURNAL != 0 {
		// SQLite reports the COMMIT that fails here as SQLITE_CANTOPEN
		// only: the log says why.
		slog.Error(extension.ErrSuperJournal.Error(), "super_journal", name.String())
		return nil, flags, code(extension.ErrSuperJournal, extension.CodeCantOpen)
	}
	if flags&vfs.OPEN_MAIN_DB == 0 {
		// Journals, temporary databases, statement journals: memory.
		return &memFile{}, flags | vfs.OPEN_MEMORY, nil
	}
	cfg, err := extension.ParseConfig(name.URIParameters(), os.Getenv)
	if err != nil {
		return nil, flags, code(err, extension.CodeCantOpen)
	}
	file, err := extension.OpenMain(name.String(), cfg, extension.OpenFlags{
		ReadOnly: flags&vfs.OPEN_READONLY != 0,
		Create:   flags&vfs.OPEN_CREATE != 0,
	})
	if err != nil {
		return nil, flags, code(err, extension.CodeCantOpen)
	}
	// Not OPEN_MEMORY: the pager would take the database for one held in
	// memory, whose page size VACUUM never changes. Its rollback journal
	// is in memory all the same (journalInMemory, or a memFile in the
	// other journal modes).
	if file.ReadOnly() {
		flags = flags&^(vfs.OPEN_READWRITE|vfs.OPEN_CREATE) | vfs.OPEN_READONLY
	}
	return &mainFile{f: file}, flags, nil
}

func (cambiumVFS) Delete(name string, syncDir bool) error {
	return nil // only journals are ever deleted, and they live in memory
}

func (cambiumVFS) Access(name string, flags vfs.AccessFlag) (bool, error) {
	return false, nil // no journal ever exists on disk, so none is hot
}

func (cambiumVFS) FullPathname(name string) (string, error) {
	return name, nil // volume names are validated when opened
}

// code tags err with the SQLite code the extension layer maps it to.
func code(err error, def extension.Code) error {
	if err == nil || err == io.EOF {
		return err
	}
	return vfs.SystemError(err, extension.ErrorCode(err, def))
}

// recoverInto turns a panic in a VFS call into an I/O error, logged with
// its stack, so that it never unwinds through SQLite.
func recoverInto(err *error, op string) {
	if r := recover(); r != nil {
		slog.Error("cambium: panic in VFS call", "op", op, "panic", r, "stack", string(debug.Stack()))
		*err = vfs.SystemError(fmt.Errorf("cambium: internal error in %s: %v", op, r), extension.CodeIOErr)
	}
}

// mainFile adapts extension.File to the ncruces VFS interfaces.
type mainFile struct{ f *extension.File }

var (
	_ vfs.FileLockState      = (*mainFile)(nil)
	_ vfs.FilePragma         = (*mainFile)(nil)
	_ vfs.FileCommitPhaseTwo = (*mainFile)(nil)
)

func (m *mainFile) Close() (err error) {
	defer recoverInto(&err, "close")
	return code(m.f.Close(), extension.CodeIOErrClose)
}

func (m *mainFile) ReadAt(p []byte, off int64) (n int, err error) {
	defer recoverInto(&err, "read")
	n, err = m.f.ReadAt(p, off)
	return n, code(err, extension.CodeIOErrRead)
}

func (m *mainFile) WriteAt(p []byte, off int64) (n int, err error) {
	defer recoverInto(&err, "write")
	n, err = m.f.WriteAt(p, off)
	return n, code(err, extension.CodeIOErrWrite)
}

func (m *mainFile) Truncate(size int64) (err error) {
	defer recoverInto(&err, "truncate")
	return code(m.f.Truncate(size), extension.CodeIOErrTrunc)
}

func (m *mainFile) Sync(vfs.SyncFlag) error { return nil } // commits carry durability

func (m *mainFile) Size() (n int64, err error) {
	defer recoverInto(&err, "size")
	return m.f.Size()
}

func (m *mainFile) Lock(l vfs.LockLevel) (err error) {
	defer recoverInto(&err, "lock")
	return code(m.f.Lock(extension.LockLevel(l)), extension.CodeIOErrLock)
}

func (m *mainFile) Unlock(l vfs.LockLevel) (err error) {
	defer recoverInto(&err, "unlock")
	return code(m.f.Unlock(extension.LockLevel(l)), extension.CodeIOErr)
}

// CommitPhaseTwo is SQLite saying that the write transaction committed:
// only then does leaving the write lock make a version.
func (m *mainFile) CommitPhaseTwo() error { return m.f.CommitPhaseTwo() }

func (m *mainFile) CheckReservedLock() (ok bool, err error) {
	defer recoverInto(&err, "check reserved lock")
	return m.f.CheckReservedLock()
}

func (m *mainFile) SectorSize() int { return 4096 }

func (m *mainFile) DeviceCharacteristics() vfs.DeviceCharacteristic {
	return vfs.DeviceCharacteristic(extension.DeviceCharacteristics)
}

func (m *mainFile) LockState() vfs.LockLevel { return vfs.LockLevel(m.f.LockState()) }

func (m *mainFile) Pragma(name, value string) (out string, err error) {
	defer recoverInto(&err, "pragma")
	out, err = m.f.Pragma(name, value)
	if err == nil {
		return out, nil
	}
	if extension.ErrorCode(err, extension.CodeError) == extension.CodeNotFound {
		return "", sqlite3.NOTFOUND
	}
	// A plain error makes SQLite report its text as the pragma's error.
	return "", errors.New(err.Error())
}

// memFile adapts extension.MemFile.
type memFile struct{ extension.MemFile }

func (m *memFile) Sync(vfs.SyncFlag) error          { return nil }
func (m *memFile) Lock(l vfs.LockLevel) error       { return m.MemFile.Lock(extension.LockLevel(l)) }
func (m *memFile) Unlock(l vfs.LockLevel) error     { return m.MemFile.Unlock(extension.LockLevel(l)) }
func (m *memFile) CheckReservedLock() (bool, error) { return false, nil }
func (m *memFile) SectorSize() int                  { return 0 }
func (m *memFile) DeviceCharacteristics() vfs.DeviceCharacteristic {
	return vfs.IOCAP_ATOMIC | vfs.IOCAP_SEQUENTIAL | vfs.IOCAP_SAFE_APPEND | vfs.IOCAP_POWERSAFE_OVERWRITE
}
