package govfs_test

import (
	"testing"
)

// BenchmarkSQL_Commit: small write transactions (one row updated) through
// the Go VFS, per journal mode: the default (MEMORY: the pager keeps the
// journal) and DELETE (the journal an in-memory file the VFS serves).
func BenchmarkSQL_Commit(b *testing.B) {
	for _, mode := range []string{"default", "delete"} {
		b.Run("journal="+mode, func(b *testing.B) {
			db := openDB(b, b.TempDir(), "bench.db", "")
			db.SetMaxOpenConns(1)
			mustExec(b, db, "PRAGMA synchronous=NORMAL")
			if mode != "default" {
				mustExec(b, db, "PRAGMA journal_mode="+mode)
			}
			mustExec(b, db, "CREATE TABLE items(id INTEGER PRIMARY KEY, qty INTEGER, body BLOB)")
			mustExec(b, db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000)
				INSERT INTO items SELECT i, 0, randomblob(200) FROM n`)
			b.ResetTimer()
			for i := range b.N {
				mustExec(b, db, "UPDATE items SET qty = qty + 1 WHERE id = ?", 1+(i*7919)%5000)
			}
		})
	}
}
