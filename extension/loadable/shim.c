// The C half of libcambium: SQLite's VFS and file method tables, and the
// extension entry points. It only marshals. Every database decision (locks,
// transactions, pragmas, pages, configuration) is made in Go by package
// extension, the same code the pure-Go VFS calls; what is left here is
// SQLite's C calling convention and the calls that Cambium hands to the
// default VFS unchanged (randomness, sleep, time, dlopen).
//
// Files are sqlite3_file structs that SQLite allocates (szOsFile bytes); each
// holds the runtime/cgo.Handle of its Go file. SQLite may call from any
// thread, one call at a time per file.

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include "shim.h"
#include "_cgo_export.h"

#define CAMBIUM_VFS_NAME "cambium"

// Volume names are short; SQLite sizes its path buffers from this.
#define CAMBIUM_MAX_PATHNAME 1024

// Device characteristics of journals, temporary files and other files that
// live in memory, as the Go VFS declares them.
#define CAMBIUM_MEM_IOCAP                                          \
	(SQLITE_IOCAP_ATOMIC | SQLITE_IOCAP_SEQUENTIAL |               \
	 SQLITE_IOCAP_SAFE_APPEND | SQLITE_IOCAP_POWERSAFE_OVERWRITE)

typedef struct cambium_file {
	sqlite3_file base;
	uintptr_t h; // runtime/cgo.Handle of the Go file
	// committed: SQLite sent SQLITE_FCNTL_COMMIT_PHASETWO since the last
	// unlock, so the write transaction it ends committed. Kept here, and
	// passed with the unlock, so that a commit costs no extra call into Go.
	int committed;
} cambium_file;

#define HANDLE(f) (((cambium_file *)(f))->h)

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int registered;        // guarded by init_mu; never reset
static sqlite3_vfs *base_vfs; // the default VFS when first loaded
static int main_iocap;        // extension.DeviceCharacteristics
static sqlite3_vfs cambium_vfs;

void cambium_log(int code, const char *msg) {
	sqlite3_log(code, "cambium: %s", msg);
}

char *cambium_strdup(const char *p, int n) {
	char *s = sqlite3_malloc(n + 1);
	if (s) {
		if (n > 0) memcpy(s, p, (size_t)n);
		s[n] = 0;
	}
	return s;
}

// File methods shared by main databases and memory files: the Go side
// dispatches on the file's type.

static int fileClose(sqlite3_file *f) {
	int rc = cambiumClose(HANDLE(f));
	HANDLE(f) = 0;
	return rc;
}

static int fileRead(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
	return cambiumRead(HANDLE(f), buf, n, off);
}

static int fileWrite(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
	return cambiumWrite(HANDLE(f), (void *)buf, n, off);
}

static int fileTruncate(sqlite3_file *f, sqlite3_int64 size) {
	return cambiumTruncate(HANDLE(f), size);
}

// Commits carry durability (the engine syncs per PRAGMA synchronous), and
// memory files have none to carry.
static int fileSync(sqlite3_file *f, int flags) {
	(void)f;
	(void)flags;
	return SQLITE_OK;
}

static int fileSize(sqlite3_file *f, sqlite3_int64 *size) {
	long long n = 0;
	int rc = cambiumSize(HANDLE(f), &n);
	*size = n;
	return rc;
}

static int fileLock(sqlite3_file *f, int level) {
	return cambiumLock(HANDLE(f), level);
}

static int fileUnlock(sqlite3_file *f, int level) {
	int committed = ((cambium_file *)f)->committed;
	((cambium_file *)f)->committed = 0;
	return cambiumUnlock(HANDLE(f), level, committed);
}

// Main database files.

static int mainCheckReservedLock(sqlite3_file *f, int *out) {
	return cambiumCheckReservedLock(HANDLE(f), out);
}

static int mainFileControl(sqlite3_file *f, int op, void *arg) {
	switch (op) {
	case SQLITE_FCNTL_PRAGMA: {
		// arg[0]: result or error text (sqlite3_malloc'd); arg[1]: the
		// pragma's name; arg[2]: its value or NULL.
		char **a = (char **)arg;
		return cambiumPragma(HANDLE(f), a[1], a[2], &a[0]);
	}
	case SQLITE_FCNTL_COMMIT_PHASETWO:
		((cambium_file *)f)->committed = 1;
		return SQLITE_OK;
	case SQLITE_FCNTL_LOCKSTATE:
		return cambiumLockState(HANDLE(f), (int *)arg);
	case SQLITE_FCNTL_VFSNAME:
		*(char **)arg = sqlite3_mprintf("%s", CAMBIUM_VFS_NAME);
		return SQLITE_OK;
	}
	return SQLITE_NOTFOUND;
}

static int mainSectorSize(sqlite3_file *f) {
	(void)f;
	return 4096;
}

static int mainDeviceCharacteristics(sqlite3_file *f) {
	(void)f;
	return main_iocap;
}

static const sqlite3_io_methods main_methods = {
	// Version 1: no shared memory (so no WAL) and no memory mapping.
	.iVersion = 1,
	.xClose = fileClose,
	.xRead = fileRead,
	.xWrite = fileWrite,
	.xTruncate = fileTruncate,
	.xSync = fileSync,
	.xFileSize = fileSize,
	.xLock = fileLock,
	.xUnlock = fileUnlock,
	.xCheckReservedLock = mainCheckReservedLock,
	.xFileControl = mainFileControl,
	.xSectorSize = mainSectorSize,
	.xDeviceCharacteristics = mainDeviceCharacteristics,
};

// Memory files: journals, temporary databases, statement journals.

static int memCheckReservedLock(sqlite3_file *f, int *out) {
	(void)f;
	*out = 0;
	return SQLITE_OK;
}

static int memFileControl(sqlite3_file *f, int op, void *arg) {
	(void)f;
	(void)op;
	(void)arg;
	return SQLITE_NOTFOUND;
}

static int memSectorSize(sqlite3_file *f) {
	(void)f;
	return 0;
}

static int memDeviceCharacteristics(sqlite3_file *f) {
	(void)f;
	return CAMBIUM_MEM_IOCAP;
}

static const sqlite3_io_methods mem_methods = {
	.iVersion = 1,
	.xClose = fileClose,
	.xRead = fileRead,
	.xWrite = fileWrite,
	.xTruncate = fileTruncate,
	.xSync = fileSync,
	.xFileSize = fileSize,
	.xLock = fileLock,
	.xUnlock = fileUnlock,
	.xCheckReservedLock = memCheckReservedLock,
	.xFileControl = memFileControl,
	.xSectorSize = memSectorSize,
	.xDeviceCharacteristics = memDeviceCharacteristics,
};

// The VFS.

static int vfsOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *outFlags) {
	(void)vfs;
	f->pMethods = 0; // SQLite calls xClose only if an open set pMethods
	if (flags & SQLITE_OPEN_SUPER_JOURNAL) return cambiumRefuseSuperJournal();
	int isMain = (flags & SQLITE_OPEN_MAIN_DB) != 0;

	// The URI parameters of a main database, as key/value arrays. SQLite
	// stores them after the name as key\0value\0...\0\0; walking that
	// layout (as ncruces's URIParameters does) is the only way to see a
	// key given twice.
	const char **kv = 0;
	int n = 0;
	if (isMain && name) {
		const char *k = sqlite3_uri_key(name, 0);
		for (const char *p = k; p && *p; p += strlen(p) + 1, p += strlen(p) + 1) n++;
		if (n > 0) {
			kv = sqlite3_malloc64(sizeof(char *) * 2 * (sqlite3_uint64)n);
			if (!kv) return SQLITE_NOMEM;
			int i = 0;
			for (const char *p = k; p && *p; i++) {
				kv[2 * i] = p;
				p += strlen(p) + 1;
				kv[2 * i + 1] = p;
				p += strlen(p) + 1;
			}
		}
	}
	uintptr_t h = 0;
	int readOnly = 0;
	int rc = cambiumOpen((char *)name, (char **)kv, n, isMain,
	                     (flags & SQLITE_OPEN_READONLY) != 0,
	                     (flags & SQLITE_OPEN_CREATE) != 0, &h, &readOnly);
	sqlite3_free(kv);
	if (rc != SQLITE_OK) return rc;
	HANDLE(f) = h;
	((cambium_file *)f)->committed = 0;
	f->pMethods = isMain ? &main_methods : &mem_methods;
	// Every file but the main database is in memory. The main database is
	// not opened with SQLITE_OPEN_MEMORY: the pager would take it for a
	// database held in memory, whose page size VACUUM never changes; its
	// journal stays in memory by conn_init's journal mode instead.
	if (!isMain) flags |= SQLITE_OPEN_MEMORY;
	// A volume opened at a past version (version=N) is read-only whatever
	// SQLite asked for; saying so makes writes fail as SQLITE_READONLY
	// before they reach the file.
	if (readOnly) {
		flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
	}
	if (outFlags) *outFlags = flags;
	return SQLITE_OK;
}

// Only journals are ever deleted, and they live in memory.
static int vfsDelete(sqlite3_vfs *vfs, const char *name, int syncDir) {
	(void)vfs;
	(void)name;
	(void)syncDir;
	return SQLITE_OK;
}

// No journal ever exists on disk, so none is ever hot.
static int vfsAccess(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
	(void)vfs;
	(void)name;
	(void)flags;
	*out = 0;
	return SQLITE_OK;
}

// Volume names are validated when opened; they are used as given.
static int vfsFullPathname(sqlite3_vfs *vfs, const char *name, int nOut, char *out) {
	(void)vfs;
	size_t n = strlen(name);
	if (n + 1 > (size_t)nOut) return SQLITE_CANTOPEN;
	memcpy(out, name, n + 1);
	return SQLITE_OK;
}

static void *vfsDlOpen(sqlite3_vfs *vfs, const char *path) {
	(void)vfs;
	return base_vfs->xDlOpen(base_vfs, path);
}

static void vfsDlError(sqlite3_vfs *vfs, int n, char *msg) {
	(void)vfs;
	base_vfs->xDlError(base_vfs, n, msg);
}

static void (*vfsDlSym(sqlite3_vfs *vfs, void *lib, const char *sym))(void) {
	(void)vfs;
	return base_vfs->xDlSym(base_vfs, lib, sym);
}

static void vfsDlClose(sqlite3_vfs *vfs, void *lib) {
	(void)vfs;
	base_vfs->xDlClose(base_vfs, lib);
}

static int vfsRandomness(sqlite3_vfs *vfs, int n, char *out) {
	(void)vfs;
	return base_vfs->xRandomness(base_vfs, n, out);
}

static int vfsSleep(sqlite3_vfs *vfs, int micros) {
	(void)vfs;
	return base_vfs->xSleep(base_vfs, micros);
}

static int vfsCurrentTime(sqlite3_vfs *vfs, double *out) {
	(void)vfs;
	return base_vfs->xCurrentTime(base_vfs, out);
}

static int vfsCurrentTimeInt64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
	(void)vfs;
	if (base_vfs->iVersion >= 2 && base_vfs->xCurrentTimeInt64) {
		return base_vfs->xCurrentTimeInt64(base_vfs, out);
	}
	double d = 0;
	int rc = base_vfs->xCurrentTime(base_vfs, &d);
	*out = (sqlite3_int64)(d * 86400000.0);
	return rc;
}

// The default VFS's last error describes its own files, not Cambium's,
// whose errors are logged (sqlite3_log and stderr) where they happen.
static int vfsGetLastError(sqlite3_vfs *vfs, int n, char *msg) {
	(void)vfs;
	if (n > 0) msg[0] = 0;
	return 0;
}

// conn_init runs for every connection opened after the extension loaded
// (sqlite3_auto_extension). One whose main database is a Cambium volume
// gets journal_mode=MEMORY (extension.JournalMode): the pager keeps its
// rollback journal itself, without a call into Go per journal write (the
// engine, not the journal, makes commits atomic).
static int conn_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
	(void)pApi;
	sqlite3_file *f = 0;
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f || f->pMethods != &main_methods) {
		return SQLITE_OK;
	}
	return sqlite3_exec(db, "PRAGMA main.journal_mode=memory", 0, 0, pzErrMsg);
}

static int cambium_register(char **errmsg) {
	sqlite3_vfs *existing = sqlite3_vfs_find(CAMBIUM_VFS_NAME);
	if (existing == &cambium_vfs) return SQLITE_OK; // loaded again
	if (existing) {
		*errmsg = sqlite3_mprintf(
		    "cambium: another VFS named \"%s\" is already registered "
		    "(a second copy of libcambium, loaded from another path?)",
		    CAMBIUM_VFS_NAME);
		return SQLITE_ERROR;
	}
	// sqlite3_uri_key, which the open of a main database uses, is in the
	// routines SQLite hands an extension from 3.31 on.
	if (sqlite3_libversion_number() < 3031000) {
		*errmsg = sqlite3_mprintf("cambium: needs SQLite 3.31.0 or newer; this is %s", sqlite3_libversion());
		return SQLITE_ERROR;
	}
	base_vfs = sqlite3_vfs_find(0);
	if (!base_vfs) {
		*errmsg = sqlite3_mprintf("cambium: SQLite has no default VFS to delegate to");
		return SQLITE_ERROR;
	}
	main_iocap = cambiumDeviceCharacteristics();

	cambium_vfs.iVersion = 2;
	cambium_vfs.szOsFile = sizeof(cambium_file);
	cambium_vfs.mxPathname = CAMBIUM_MAX_PATHNAME;
	cambium_vfs.zName = CAMBIUM_VFS_NAME;
	cambium_vfs.xOpen = vfsOpen;
	cambium_vfs.xDelete = vfsDelete;
	cambium_vfs.xAccess = vfsAccess;
	cambium_vfs.xFullPathname = vfsFullPathname;
	cambium_vfs.xDlOpen = vfsDlOpen;
	cambium_vfs.xDlError = vfsDlError;
	cambium_vfs.xDlSym = vfsDlSym;
	cambium_vfs.xDlClose = vfsDlClose;
	cambium_vfs.xRandomness = vfsRandomness;
	cambium_vfs.xSleep = vfsSleep;
	cambium_vfs.xCurrentTime = vfsCurrentTime;
	cambium_vfs.xGetLastError = vfsGetLastError;
	cambium_vfs.xCurrentTimeInt64 = vfsCurrentTimeInt64;

	const char *def = getenv("CAMBIUM_MAKE_DEFAULT");
	int makeDefault = def && strcmp(def, "1") == 0;
	int rc = sqlite3_vfs_register(&cambium_vfs, makeDefault);
	if (rc != SQLITE_OK) {
		*errmsg = sqlite3_mprintf("cambium: register VFS: %s", sqlite3_errstr(rc));
		return rc;
	}
	rc = sqlite3_auto_extension((void (*)(void))conn_init);
	if (rc != SQLITE_OK) {
		*errmsg = sqlite3_mprintf("cambium: register the connection hook: %s", sqlite3_errstr(rc));
	}
	return rc;
}

// sqlite3_cambium_init is the entry point SQLite derives from the file name
// libcambium.so. It registers the VFS "cambium" once per process; loading
// again (another connection) finds it registered and does nothing. The
// extension stays loaded: the Go runtime cannot be unloaded.
#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_cambium_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
	(void)db;
	int rc = SQLITE_OK;
	char *errmsg = 0;
	pthread_mutex_lock(&init_mu);
	SQLITE_EXTENSION_INIT2(pApi);
	if (!registered) {
		rc = cambium_register(&errmsg);
		registered = rc == SQLITE_OK;
	}
	pthread_mutex_unlock(&init_mu);
	if (rc != SQLITE_OK) {
		if (pzErrMsg) {
			*pzErrMsg = errmsg;
		} else {
			sqlite3_free(errmsg);
		}
		return rc;
	}
	return SQLITE_OK_LOAD_PERMANENTLY;
}

// sqlite3_extension_init is the entry point SQLite tries when the file has
// been renamed.
int sqlite3_extension_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
	return sqlite3_cambium_init(db, pzErrMsg, pApi);
}
