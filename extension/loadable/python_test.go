package main

import (
	"strconv"
	"strings"
	"testing"
)

// pyPrelude is the start of every Python script: argv[1] is the library.
const pyPrelude = `
import json, sqlite3, sys, threading, time, random

LIB = sys.argv[1]

def load():
    """Loads the extension through a connection of its own, as a host
    must before any URI can name vfs=cambium."""
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(LIB)
    c.enable_load_extension(False)
    return c

def connect(uri, **kw):
    return sqlite3.connect(uri, uri=True, isolation_level=None, **kw)
`

// TestPython_Volume: Python's sqlite3 module (the system python3) loads
// the extension on two connections and writes, reads and checks a volume;
// errors carry Cambium's messages.
func TestPython_Volume(t *testing.T) {
	dir, envDir := t.TempDir(), t.TempDir()
	var out struct {
		Count, SumN    int64
		Point          string
		Integrity      string
		JournalMode    string `json:"journal_mode"`
		PageCount      int    `json:"page_count"`
		Status         string
		PragmaError    string `json:"pragma_error"`
		OpenError      string `json:"open_error"`
		SecondConnRows int64  `json:"second_conn_rows"`
		EnvDir         string `json:"env_dir"`
	}
	stderr := runPython(t, hostEnv(), pyPrelude+`
uri, bad_uri = sys.argv[2], sys.argv[3]
boot, boot2 = load(), load()  # loading again is harmless
db = connect(uri)
db.executescript("""`+insertRows+`""")
out = {}
out["Count"], out["SumN"] = db.execute("SELECT count(*), sum(n) FROM t").fetchone()
out["Point"] = db.execute("SELECT v FROM t WHERE n = ?", (7*`+strconv.Itoa(pointRow)+`,)).fetchone()[0]
out["Integrity"] = db.execute("PRAGMA integrity_check").fetchone()[0]
out["journal_mode"] = db.execute("PRAGMA journal_mode").fetchone()[0]
out["page_count"] = db.execute("PRAGMA page_count").fetchone()[0]
out["Status"] = db.execute("PRAGMA cambium_status").fetchone()[0]
try:
    db.execute("PRAGMA cambium_nope")
    out["pragma_error"] = "none"
except sqlite3.Error as e:
    out["pragma_error"] = str(e)
try:
    connect(bad_uri)
    out["open_error"] = "none"
except sqlite3.Error as e:
    out["open_error"] = str(e)
other = connect(uri)
out["second_conn_rows"] = other.execute("SELECT count(*) FROM t").fetchone()[0]
other.close()
# A setting the host puts in the environment after loading is seen.
import os
os.environ["CAMBIUM_DIR"] = sys.argv[4]
env = connect("file:env.db?vfs=cambium")
env.execute("CREATE TABLE e(a)")
out["env_dir"] = json.loads(env.execute("PRAGMA cambium_status").fetchone()[0])["dir"]
env.close()
db.close()
print(json.dumps(out))
`, &out, volumeURI("py.db", dir), volumeURI("bad.db", dir, "dri=oops"), envDir)

	if out.Count != rows || strconv.FormatInt(out.SumN, 10) != rowsSumN {
		t.Errorf("count, sum = %d, %d; want %d, %s", out.Count, out.SumN, rows, rowsSumN)
	}
	if out.Point != pointText || out.Integrity != "ok" || out.JournalMode != "memory" {
		t.Errorf("point %q, integrity_check %q, journal_mode %q; want %q, ok, memory", out.Point, out.Integrity, out.JournalMode, pointText)
	}
	if st := parseStatus(t, out.Status); st.Volume != "py.db" || st.PageCount != out.PageCount || st.Version == 0 {
		t.Errorf("cambium_status = %+v, want volume py.db with page_count %d", st, out.PageCount)
	}
	if !strings.Contains(out.PragmaError, "unknown pragma cambium_nope") {
		t.Errorf("PRAGMA cambium_nope raised %q", out.PragmaError)
	}
	if out.OpenError == "none" || !strings.Contains(stderr, `unknown URI parameter "dri"`) {
		t.Errorf("opening with dri=oops: error %q, stderr:\n%s", out.OpenError, stderr)
	}
	if out.SecondConnRows != rows {
		t.Errorf("a second connection sees %d rows, want %d", out.SecondConnRows, rows)
	}
	if out.EnvDir != envDir {
		t.Errorf("CAMBIUM_DIR=%s set after loading: the volume is in %q", envDir, out.EnvDir)
	}
}

// TestPython_Bank: threads of one process, each with its own connection,
// move money between accounts in BEGIN IMMEDIATE transactions (retrying
// when the database is locked or their snapshot is stale) while reader
// threads check in read transactions that the total never changes. Every
// transfer is logged in the same transaction, so that at the end each
// balance must equal its start plus its logged transfers: a lost update
// would break that even though it keeps the total.
func TestPython_Bank(t *testing.T) {
	const (
		accounts  = 20
		start     = 1000
		writers   = 3
		transfers = 150 // per writer
		readers   = 3
	)
	dir := t.TempDir()
	var out struct {
		Done       int64 `json:"done"`
		Retries    int64 `json:"retries"`
		Reads      int64 `json:"reads"`
		Violations []string
		Total      int64 `json:"total"`
		Accounts   int64 `json:"accounts"`
		Logged     int64 `json:"logged"`
		Mismatched int64 `json:"mismatched"`
		Integrity  string
		Errors     []string
	}
	runPython(t, hostEnv(), pyPrelude+`
uri = sys.argv[2]
ACCOUNTS, START, WRITERS, TRANSFERS, READERS = `+strings.Join([]string{
		strconv.Itoa(accounts), strconv.Itoa(start), strconv.Itoa(writers), strconv.Itoa(transfers), strconv.Itoa(readers)}, ", ")+`
boot = load()
db = connect(uri)
db.executescript("""
CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE log(id INTEGER PRIMARY KEY, src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL);
""")
db.execute("INSERT INTO accounts SELECT value, ? FROM (WITH RECURSIVE c(value) AS (SELECT 1 UNION ALL SELECT value+1 FROM c WHERE value < ?) SELECT value FROM c)", (START, ACCOUNTS))

lock = threading.Lock()
stats = {"done": 0, "retries": 0, "reads": 0}
violations, errors = [], []
writing = threading.Event()
writing.set()

def busy(e):
    m = str(e)
    return "locked" in m or "busy" in m

def writer(seed):
    rnd = random.Random(seed)
    c = connect(uri, timeout=0)
    done = retries = 0
    try:
        while done < TRANSFERS:
            src, dst = rnd.sample(range(1, ACCOUNTS + 1), 2)
            amount = rnd.randint(1, 100)
            try:
                c.execute("BEGIN IMMEDIATE")
                c.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, src))
                c.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst))
                c.execute("INSERT INTO log(src, dst, amount) VALUES (?, ?, ?)", (src, dst, amount))
                c.execute("COMMIT")
                done += 1
            except sqlite3.OperationalError as e:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                if not busy(e):
                    raise
                retries += 1
                time.sleep(rnd.random() * 0.002)
    except Exception as e:
        with lock:
            errors.append("writer: %r" % e)
    finally:
        c.close()
        with lock:
            stats["done"] += done
            stats["retries"] += retries

def reader():
    c = connect(uri)
    n = 0
    try:
        while writing.is_set() or n == 0:
            c.execute("BEGIN")
            total, count = c.execute("SELECT sum(balance), count(*) FROM accounts").fetchone()
            again = c.execute("SELECT sum(balance) FROM accounts WHERE id > 0").fetchone()[0]
            c.execute("COMMIT")
            n += 1
            if total != ACCOUNTS * START or count != ACCOUNTS or again != total:
                with lock:
                    violations.append("sum %s, count %s, again %s" % (total, count, again))
    except Exception as e:
        with lock:
            errors.append("reader: %r" % e)
    finally:
        c.close()
        with lock:
            stats["reads"] += n

ws = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
rs = [threading.Thread(target=reader) for _ in range(READERS)]
for th in rs + ws:
    th.start()
for th in ws:
    th.join()
writing.clear()
for th in rs:
    th.join()

out = dict(stats)
out["Violations"], out["Errors"] = violations, errors
check = connect(uri)
out["total"], out["accounts"] = check.execute("SELECT sum(balance), count(*) FROM accounts").fetchone()
out["logged"] = check.execute("SELECT count(*) FROM log").fetchone()[0]
out["mismatched"] = check.execute("""
SELECT count(*) FROM accounts a WHERE balance != ?
  - (SELECT coalesce(sum(amount), 0) FROM log WHERE src = a.id)
  + (SELECT coalesce(sum(amount), 0) FROM log WHERE dst = a.id)""", (START,)).fetchone()[0]
out["Integrity"] = check.execute("PRAGMA integrity_check").fetchone()[0]
print(json.dumps(out))
`, &out, volumeURI("bank.db", dir))

	t.Logf("transfers %d (retries %d), read transactions %d", out.Done, out.Retries, out.Reads)
	if len(out.Errors) > 0 {
		t.Errorf("errors: %q", out.Errors)
	}
	if len(out.Violations) > 0 {
		t.Errorf("%d read transactions saw a wrong total, first: %s", len(out.Violations), out.Violations[0])
	}
	if out.Done != writers*transfers || out.Logged != out.Done {
		t.Errorf("%d transfers done, %d logged; want %d", out.Done, out.Logged, writers*transfers)
	}
	if out.Total != accounts*start || out.Accounts != accounts {
		t.Errorf("final total %d over %d accounts, want %d over %d", out.Total, out.Accounts, accounts*start, accounts)
	}
	if out.Mismatched != 0 {
		t.Errorf("%d accounts disagree with the transfer log (a lost update)", out.Mismatched)
	}
	if out.Reads < readers || out.Integrity != "ok" {
		t.Errorf("%d read transactions, integrity_check %q", out.Reads, out.Integrity)
	}

	// The shell, another host in another process, sees the same bank.
	r := runShell(t, "", hostEnv(), `.bail on
.load `+libPath(t)+`
.open `+volumeURI("bank.db", dir)+`
.print @bank
SELECT sum(balance), count(*), (SELECT count(*) FROM log) FROM accounts;
`)
	if r.err != nil {
		t.Fatalf("sqlite3: %v\n%s\n%s", r.err, r.stdout, r.stderr)
	}
	want := strconv.Itoa(accounts*start) + "|" + strconv.Itoa(accounts) + "|" + strconv.Itoa(writers*transfers)
	if got := one(t, sections(r.stdout), "bank"); got != want {
		t.Errorf("the shell sees %s, want %s", got, want)
	}
}
