package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// backupRows makes table t of 3,000 rows whose blobs, of 300 to 1,800
// bytes, spill into overflow pages; tag tells two such tables apart.
func backupRows(tag string) string {
	return `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, b BLOB NOT NULL);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 3000)
INSERT INTO t SELECT i, printf('` + tag + `-%05d', i), randomblob(300 + i * 7 % 1500) FROM c;
CREATE INDEX t_v ON t(v);
`
}

// dumpRows prints every row of t (the blobs in hex) after the marker
// @name.
func dumpRows(name string) string {
	return ".print @" + name + "\nSELECT id, v, hex(b) FROM t ORDER BY id;\n"
}

// TestShell_BackupRestore: the shell's .backup copies a volume into a plain
// file that plain SQLite opens, and .restore copies a plain file into a
// volume; each copy holds every row of its source.
func TestShell_BackupRestore(t *testing.T) {
	so := libPath(t)
	dir, files := t.TempDir(), t.TempDir()
	backup, source := filepath.Join(files, "backup.db"), filepath.Join(files, "source.db")

	r := runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+volumeURI("vol.db", dir)+`
`+backupRows("volume")+dumpRows("volume")+`
.backup main `+backup+`
.open `+source+`
`+backupRows("plain")+dumpRows("plain")+`
.open `+volumeURI("restored.db", dir)+`
.restore main `+source+`
`)
	if r.err != nil {
		t.Fatalf("sqlite3: %v\nstderr:\n%s", r.err, r.stderr)
	}
	s := sections(r.stdout)
	if len(s["volume"]) != 3000 || len(s["plain"]) != 3000 {
		t.Fatalf("the sources have %d and %d rows, want 3000", len(s["volume"]), len(s["plain"]))
	}

	// The backup, with plain SQLite alone.
	r = runShell(t, "", hostEnv(), `.bail on
.open `+backup+`
`+dumpRows("copy")+`
.print @integrity
PRAGMA integrity_check;
`)
	if r.err != nil {
		t.Fatalf("sqlite3 on the backup: %v\nstderr:\n%s", r.err, r.stderr)
	}
	c := sections(r.stdout)
	if !slices.Equal(c["copy"], s["volume"]) || one(t, c, "integrity") != "ok" {
		t.Errorf(".backup of the volume: %d rows (equal: %v), integrity_check %q; want the volume's 3000 rows",
			len(c["copy"]), slices.Equal(c["copy"], s["volume"]), c["integrity"])
	}

	// The restored volume, in a new process.
	r = runShell(t, "", hostEnv(), `.bail on
.load `+so+`
.open `+volumeURI("restored.db", dir, "mode=ro")+`
`+dumpRows("copy")+`
.print @integrity
PRAGMA integrity_check;
.print @status
PRAGMA cambium_status;
`)
	if r.err != nil {
		t.Fatalf("sqlite3 on the restored volume: %v\nstderr:\n%s", r.err, r.stderr)
	}
	c = sections(r.stdout)
	if !slices.Equal(c["copy"], s["plain"]) || one(t, c, "integrity") != "ok" {
		t.Errorf(".restore into a volume: %d rows (equal: %v), integrity_check %q; want the plain file's 3000 rows",
			len(c["copy"]), slices.Equal(c["copy"], s["plain"]), c["integrity"])
	}
	if st := parseStatus(t, one(t, c, "status")); st.Volume != "restored.db" || st.Version == 0 {
		t.Errorf("cambium_status of the restored volume: %+v", st)
	}
}

// TestPython_Backup: Connection.backup, in steps of 16 pages, copies a
// volume into a plain file and a plain file into a new volume, as its first
// version; every row of each copy, read by a new connection, equals its
// source's.
func TestPython_Backup(t *testing.T) {
	dir, files := t.TempDir(), t.TempDir()
	var out struct {
		VolumeRows, PlainRows       int
		ToPlainEqual, ToVolumeEqual bool
		ToPlainCheck, ToVolumeCheck string
		RestoredVersion             int64
		Steps                       int
	}
	runPython(t, hostEnv(), pyPrelude+`
vol_uri, restored_uri, plain_out, plain_in = sys.argv[2:6]
boot = load()
ROWS = """`+backupRows("TAG")+`"""
DUMP = "SELECT id, v, b FROM t ORDER BY id"
out = {"Steps": 0}
def step(status, remaining, total):
    out["Steps"] += 1

# A volume into a plain file.
vol = connect(vol_uri)
vol.executescript(ROWS.replace("TAG", "volume"))
want = vol.execute(DUMP).fetchall()
dst = sqlite3.connect(plain_out)
vol.backup(dst, pages=16, progress=step)
dst.close()
vol.close()
copy = sqlite3.connect(plain_out)
out["VolumeRows"] = len(want)
out["ToPlainEqual"] = copy.execute(DUMP).fetchall() == want
out["ToPlainCheck"] = copy.execute("PRAGMA integrity_check").fetchone()[0]
copy.close()

# A plain file into a volume.
src = sqlite3.connect(plain_in, isolation_level=None)
src.executescript(ROWS.replace("TAG", "plain"))
want = src.execute(DUMP).fetchall()
dst = connect(restored_uri)
src.backup(dst, pages=16, progress=step)
dst.close()
src.close()
copy = connect(restored_uri)
out["PlainRows"] = len(want)
out["ToVolumeEqual"] = copy.execute(DUMP).fetchall() == want
out["ToVolumeCheck"] = copy.execute("PRAGMA integrity_check").fetchone()[0]
out["RestoredVersion"] = int(copy.execute("PRAGMA cambium_version").fetchone()[0])
copy.close()
print(json.dumps(out))
`, &out, volumeURI("vol.db", dir), volumeURI("restored.db", dir), filepath.Join(files, "out.db"), filepath.Join(files, "in.db"))

	if out.VolumeRows != 3000 || !out.ToPlainEqual || out.ToPlainCheck != "ok" {
		t.Errorf("volume -> plain file: %d rows, equal %v, integrity_check %q", out.VolumeRows, out.ToPlainEqual, out.ToPlainCheck)
	}
	// The backup keeps the volume's write lock from its first step to its
	// last: it is one version, which no reader sees half of.
	if out.PlainRows != 3000 || !out.ToVolumeEqual || out.ToVolumeCheck != "ok" || out.RestoredVersion != 1 {
		t.Errorf("plain file -> volume: %d rows, equal %v, integrity_check %q, cambium_version %d",
			out.PlainRows, out.ToVolumeEqual, out.ToVolumeCheck, out.RestoredVersion)
	}
	if out.Steps < 2*10 {
		t.Errorf("the backups took %d steps of 16 pages: each should take many", out.Steps)
	}
}

// TestShell_Attach: on a volume's connection, ATTACH of a bare path is a
// clear error (SQLite would open it as a volume, which a path cannot name),
// a plain file attaches by a URI naming SQLite's own VFS, and a transaction
// that writes two plain files is refused for the super-journal it needs, and
// rolls back.
func TestShell_Attach(t *testing.T) {
	so := libPath(t)
	dir, files := t.TempDir(), t.TempDir()
	p1, p2 := filepath.Join(files, "p1.db"), filepath.Join(files, "p2.db")
	r := runShell(t, "", hostEnv(), `.load `+so+`
.open `+volumeURI("main.db", dir)+`
ATTACH '`+filepath.Join(files, "bare.db")+`' AS bare;
ATTACH 'file:`+p1+`?vfs=unix' AS p1;
ATTACH 'file:`+p2+`?vfs=unix' AS p2;
CREATE TABLE main.kv(k, v);
CREATE TABLE p1.kv(k, v);
CREATE TABLE p2.kv(k, v);
BEGIN;
INSERT INTO main.kv VALUES (1, 'main');
INSERT INTO p1.kv VALUES (1, 'p1');
INSERT INTO p2.kv VALUES (1, 'p2');
COMMIT;
ROLLBACK;
BEGIN;
INSERT INTO main.kv VALUES (2, 'main');
INSERT INTO p1.kv VALUES (2, 'p1');
COMMIT;
.print @rows
SELECT (SELECT group_concat(k) FROM main.kv), (SELECT group_concat(k) FROM p1.kv), (SELECT count(*) FROM p2.kv);
`)
	for _, want := range []string{"is a file path, not a volume name", "?vfs=unix", "needs a super-journal on disk"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if got := sections(r.stdout)["rows"]; !slices.Equal(got, []string{"2|2|0"}) {
		t.Errorf("rows after the refused transaction and one on a single plain file: %q, want 2|2|0\nstderr:\n%s", got, r.stderr)
	}
}
