// Declarations shared by shim.c and the Go side of the extension. Kept free
// of definitions: cgo copies the preamble that includes this file into
// _cgo_export.h, which shim.c includes too.

#ifndef CAMBIUM_SHIM_H
#define CAMBIUM_SHIM_H

// cambium_log passes a message to sqlite3_log (the host's SQLITE_CONFIG_LOG
// callback, if it set one).
void cambium_log(int code, const char *msg);

// cambium_strdup returns a NUL-terminated copy of p[0:n] allocated with
// sqlite3_malloc, which SQLite frees: results and errors of FCNTL_PRAGMA.
char *cambium_strdup(const char *p, int n);

#endif
