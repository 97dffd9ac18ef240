//go:build cgo

package main

/*
#cgo LDFLAGS: ${SRCDIR}/exports.so
#include <stdint.h>
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/cgo"
	"runtime/debug"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cambiumdb/cambium/extension"
	_ "github.com/cambiumdb/cambium/remote/s3" // s3:// for remote=
)

// main is required by -buildmode=c-shared and never runs.
func main() {}

// codeIOErrShortRead is SQLITE_IOERR_SHORT_READ: a read past the end, with
// the rest of the buffer zeroed.
const codeIOErrShortRead = extension.CodeIOErr | 2<<8

// vfsFile is what both kinds of file do: *extension.File (main databases)
// and *extension.MemFile (everything else).
type vfsFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Size() (int64, error)
	Lock(extension.LockLevel) error
	Unlock(extension.LockLevel) error
	Close() error
}

var (
	_ vfsFile = (*extension.File)(nil)
	_ vfsFile = (*extension.MemFile)(nil)
)

func fileOf(h C.uintptr_t) vfsFile { return cgo.Handle(h).Value().(vfsFile) }

func mainOf(h C.uintptr_t) (*extension.File, error) {
	f, ok := cgo.Handle(h).Value().(*extension.File)
	if !ok {
		return nil, errors.New("not a main database file")
	}
	return f, nil
}

// recovered turns a panic in an exported function into an I/O error code,
// logged with its stack: a Go panic must never unwind into SQLite's C.
func recovered(rc *C.int, op string) {
	if r := recover(); r != nil {
		err := fmt.Errorf("internal error in %s: %v", op, r)
		slog.Error("cambium: panic in VFS call", "op", op, "panic", r, "stack", string(debug.Stack()))
		logSQLite(extension.CodeIOErr, err)
		*rc = C.int(extension.CodeIOErr)
	}
}

// result maps err, which names the operation that failed, to the code to
// give SQLite (def when the extension layer has none) and reports it: to
// sqlite3_log unless it is lock contention, and to stderr too when SQLite
// would describe it only as "disk I/O error", "unable to open database
// file", "database disk image is malformed" or "misuse".
func result(err error, def extension.Code) C.int {
	if err == nil {
		return C.int(extension.OK)
	}
	code := extension.ErrorCode(err, def)
	switch code & 0xff {
	case extension.CodeBusy, extension.CodeNotFound:
	case extension.CodeIOErr, extension.CodeCantOpen, extension.CodeCorrupt, extension.CodeMisuse:
		slog.Error("cambium: " + err.Error())
		logSQLite(code, err)
	default:
		logSQLite(code, err)
	}
	return C.int(code)
}

// openFailed reports why a main database did not open, always: SQLite
// itself says only "unable to open database file" or "database is locked".
func openFailed(err error) C.int {
	code := extension.ErrorCode(err, extension.CodeCantOpen)
	slog.Error("cambium: " + err.Error())
	logSQLite(code, err)
	return C.int(code)
}

func logSQLite(code extension.Code, err error) {
	msg := C.CString(err.Error())
	defer C.free(unsafe.Pointer(msg))
	C.cambium_log(C.int(code), msg)
}

// sqliteString copies s into memory from sqlite3_malloc, which SQLite
// frees.
func sqliteString(s string) *C.char {
	return C.cambium_strdup((*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.int(len(s)))
}

// getenv reads the environment through C, so that CAMBIUM_* variables the
// host sets after loading the extension (Python's os.environ, setenv) are
// seen: the Go runtime's own copy, which os.Getenv and so the AWS SDK read,
// is taken once, when the library loads.
func getenv(name string) string {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	if v := C.getenv(cs); v != nil {
		return C.GoString(v)
	}
	return ""
}

//export cambiumDeviceCharacteristics
func cambiumDeviceCharacteristics() C.int {
	return C.int(extension.DeviceCharacteristics)
}

// cambiumOpen opens a main database (a volume, configured by the URI
// parameters kv, n key/value pairs, and the environment) or a memory file,
// and stores its handle in *out. *outReadOnly says whether the file is
// read-only although SQLite asked for read-write (a past version: time
// travel).
//
//export cambiumOpen
func cambiumOpen(name *C.char, kv **C.char, n C.int, isMain, readOnly, create C.int, out *C.uintptr_t, outReadOnly *C.int) (rc C.int) {
	defer recovered(&rc, "open")
	if isMain == 0 {
		*out = C.uintptr_t(cgo.NewHandle(&extension.MemFile{}))
		return C.int(extension.OK)
	}
	if name == nil {
		return openFailed(errors.New("open: a main database without a name"))
	}
	volume := C.GoString(name)
	params := map[string][]string{}
	pairs := unsafe.Slice(kv, 2*int(n))
	for i := 0; i+1 < len(pairs); i += 2 {
		k := C.GoString(pairs[i])
		params[k] = append(params[k], C.GoString(pairs[i+1]))
	}
	cfg, err := extension.ParseConfig(params, getenv)
	if err != nil {
		return openFailed(fmt.Errorf("open %q: %w", volume, err))
	}
	f, err := extension.OpenMain(volume, cfg, extension.OpenFlags{ReadOnly: readOnly != 0, Create: create != 0})
	if err != nil {
		if !strings.Contains(err.Error(), strconv.Quote(volume)) {
			err = fmt.Errorf("open %q: %w", volume, err)
		}
		return openFailed(err)
	}
	if f.ReadOnly() {
		*outReadOnly = 1
	}
	*out = C.uintptr_t(cgo.NewHandle(f))
	return C.int(extension.OK)
}

// cambiumRefuseSuperJournal answers SQLite's open of a super-journal (see
// extension.ErrSuperJournal), saying why in the log: SQLite reports the
// COMMIT that fails as SQLITE_CANTOPEN only.
//
//export cambiumRefuseSuperJournal
func cambiumRefuseSuperJournal() C.int { return openFailed(extension.ErrSuperJournal) }

//export cambiumClose
func cambiumClose(h C.uintptr_t) (rc C.int) {
	defer recovered(&rc, "close")
	defer cgo.Handle(h).Delete()
	if err := fileOf(h).Close(); err != nil {
		return result(fmt.Errorf("close: %w", err), extension.CodeIOErrClose)
	}
	return C.int(extension.OK)
}

// cambiumRead reads n bytes at off into buf, which SQLite lends for the
// call only.
//
//export cambiumRead
func cambiumRead(h C.uintptr_t, buf unsafe.Pointer, n C.int, off C.longlong) (rc C.int) {
	defer recovered(&rc, "read")
	p := unsafe.Slice((*byte)(buf), int(n))
	got, err := fileOf(h).ReadAt(p, int64(off))
	if got == len(p) {
		return C.int(extension.OK)
	}
	if err != io.EOF {
		if err == nil {
			err = io.ErrNoProgress
		}
		return result(err, extension.CodeIOErrRead)
	}
	clear(p[got:])
	return C.int(codeIOErrShortRead)
}

// cambiumWrite writes buf[0:n] at off. The files copy what they keep (an
// io.WriterAt must not retain p), so SQLite's buffer is not held.
//
//export cambiumWrite
func cambiumWrite(h C.uintptr_t, buf unsafe.Pointer, n C.int, off C.longlong) (rc C.int) {
	defer recovered(&rc, "write")
	_, err := fileOf(h).WriteAt(unsafe.Slice((*byte)(buf), int(n)), int64(off))
	return result(err, extension.CodeIOErrWrite)
}

//export cambiumTruncate
func cambiumTruncate(h C.uintptr_t, size C.longlong) (rc C.int) {
	defer recovered(&rc, "truncate")
	return result(fileOf(h).Truncate(int64(size)), extension.CodeIOErrTrunc)
}

//export cambiumSize
func cambiumSize(h C.uintptr_t, out *C.longlong) (rc C.int) {
	defer recovered(&rc, "size")
	n, err := fileOf(h).Size()
	*out = C.longlong(n)
	return result(err, extension.CodeIOErr)
}

//export cambiumLock
func cambiumLock(h C.uintptr_t, level C.int) (rc C.int) {
	defer recovered(&rc, "lock")
	return result(fileOf(h).Lock(extension.LockLevel(level)), extension.CodeIOErrLock)
}

// cambiumUnlock lowers the lock to level; committed says SQLite sent
// SQLITE_FCNTL_COMMIT_PHASETWO since the last unlock (the C side keeps
// that flag), so that the write transaction the unlock ends committed.
//
//export cambiumUnlock
func cambiumUnlock(h C.uintptr_t, level C.int, committed C.int) (rc C.int) {
	defer recovered(&rc, "unlock")
	f := fileOf(h)
	if mf, ok := f.(*extension.File); ok && committed != 0 {
		mf.CommitPhaseTwo()
	}
	return result(f.Unlock(extension.LockLevel(level)), extension.CodeIOErr)
}

//export cambiumCheckReservedLock
func cambiumCheckReservedLock(h C.uintptr_t, out *C.int) (rc C.int) {
	defer recovered(&rc, "check reserved lock")
	*out = 0
	f, err := mainOf(h)
	if err != nil {
		return result(err, extension.CodeIOErr)
	}
	held, err := f.CheckReservedLock()
	if held {
		*out = 1
	}
	return result(err, extension.CodeIOErr)
}

//export cambiumLockState
func cambiumLockState(h C.uintptr_t, out *C.int) (rc C.int) {
	defer recovered(&rc, "lock state")
	f, err := mainOf(h)
	if err != nil {
		return result(err, extension.CodeIOErr)
	}
	*out = C.int(f.LockState())
	return C.int(extension.OK)
}

// cambiumPragma handles SQLITE_FCNTL_PRAGMA: PRAGMA name[=value] (value
// NULL without one). It stores a Cambium pragma's result, or the text of
// its error, in *out; a pragma that is not Cambium's gives SQLITE_NOTFOUND
// so that SQLite handles it. Like the Go VFS, every refusal is SQLITE_ERROR
// with Cambium's message as the statement's error.
//
//export cambiumPragma
func cambiumPragma(h C.uintptr_t, name, value *C.char, out **C.char) (rc C.int) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("cambium: panic in VFS call", "op", "pragma", "panic", r, "stack", string(debug.Stack()))
			*out = sqliteString(fmt.Sprintf("cambium: internal error in pragma: %v", r))
			rc = C.int(extension.CodeError)
		}
	}()
	f, err := mainOf(h)
	if err != nil {
		return result(err, extension.CodeIOErr)
	}
	var v string
	if value != nil {
		v = C.GoString(value)
	}
	res, err := f.Pragma(C.GoString(name), v)
	if err != nil {
		if extension.ErrorCode(err, extension.CodeError) == extension.CodeNotFound {
			return C.int(extension.CodeNotFound)
		}
		*out = sqliteString(err.Error())
		return C.int(extension.CodeError)
	}
	if res != "" {
		*out = sqliteString(res)
	}
	return C.int(extension.OK)
}
