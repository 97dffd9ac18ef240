#!/usr/bin/env bash
# Overhead of libcambium in the stock sqlite3 shell, against the same shell
# on a plain file, measured side by side in one run and reported as ratios
# (cambium's throughput / the plain file's; above 1 means Cambium is faster).
#
#   extension/loadable/bench.sh            # 200,000 reads, 2,000 writes, best of 3
#   READS=50000 WRITES=500 REPEAT=1 extension/loadable/bench.sh
#
# reads:  READS indexed point SELECTs (a secondary-index lookup and a row
#         fetch each, one statement and so one read transaction each) in one
#         shell process, on a 100,000-row table.
# writes: WRITES small write transactions (one autocommit INSERT each) in one
#         shell process, at the same durability class:
#           plain WAL + synchronous=NORMAL  vs  cambium synchronous=NORMAL
#             (a commit survives the death of the process, not of the machine)
#           plain rollback journal + FULL   vs  cambium synchronous=FULL (default)
#             (a commit survives both: fsync before COMMIT returns)
# Each time covers the whole shell process, so cambium's include loading the
# extension (starting the Go runtime) and opening its store. Files live under
# BENCH_DIR (default build/bench-loadable), on the disk, so that fsync costs
# what it costs.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
READS=${READS:-200000}
WRITES=${WRITES:-2000}
REPEAT=${REPEAT:-3}
SQLITE=${SQLITE:-/usr/bin/sqlite3}
work=${BENCH_DIR:-$repo/build/bench-loadable}

make -s -C "$repo" extension >/dev/null
lib=$repo/build/libcambium
rm -rf "$work"
mkdir -p "$work"
cd "$work"

# Inputs, generated once, identical for both sides.
awk -v n="$READS" 'BEGIN { srand(1); for (i = 0; i < n; i++) printf "SELECT v FROM t WHERE k = %d;\n", int(rand() * 100000) * 7919 % 1000003 }' > reads.sql
awk -v n="$WRITES" -v q="'" 'BEGIN { for (i = 0; i < n; i++) printf "INSERT INTO w(v) VALUES (%sw-%08d-%s%s);\n", q, i, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", q }' > writes.sql
schema="CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM c WHERE i < 99999)
INSERT INTO t(k, v) SELECT i * 7919 % 1000003, printf('value-%08d-%s', i, hex(randomblob(20))) FROM c;
COMMIT;
CREATE INDEX t_k ON t(k);"

cambium() { # cambium NAME DIR: the shell prelude that opens volume NAME in DIR
	printf '.load %s\n.open file:%s?vfs=cambium&dir=%s\n' "$lib" "$1" "$2"
}

# Read databases, built outside the timings.
"$SQLITE" plain-read.db "$schema"
{ cambium read.db "$work/cambium-read"; echo "$schema"; } | "$SQLITE" -batch

now() { date +%s%N; }
# timed NAME: runs the shell on standard input, prints elapsed nanoseconds.
timed() {
	local t0 t1
	t0=$(now)
	"$SQLITE" -batch >/dev/null
	t1=$(now)
	echo $((t1 - t0))
}
best() { # best OLD NEW: the smaller, treating "" as none
	if [ -z "$1" ] || [ "$2" -lt "$1" ]; then echo "$2"; else echo "$1"; fi
}

declare -A ns
for rep in $(seq "$REPEAT"); do
	t=$( { echo ".open plain-read.db"; cat reads.sql; } | timed); ns[read_plain]=$(best "${ns[read_plain]:-}" "$t")
	t=$( { cambium read.db "$work/cambium-read"; cat reads.sql; } | timed); ns[read_cambium]=$(best "${ns[read_cambium]:-}" "$t")

	rm -f plain-wal.db* plain-full.db*; rm -rf cambium-normal cambium-full
	t=$( { echo ".open plain-wal.db"; echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT);"; cat writes.sql; } | timed)
	ns[normal_plain]=$(best "${ns[normal_plain]:-}" "$t")
	t=$( { cambium w.db "$work/cambium-normal"; echo "PRAGMA synchronous=NORMAL; CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT);"; cat writes.sql; } | timed)
	ns[normal_cambium]=$(best "${ns[normal_cambium]:-}" "$t")
	t=$( { echo ".open plain-full.db"; echo "CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT);"; cat writes.sql; } | timed)
	ns[full_plain]=$(best "${ns[full_plain]:-}" "$t")
	t=$( { cambium w.db "$work/cambium-full"; echo "CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT);"; cat writes.sql; } | timed)
	ns[full_cambium]=$(best "${ns[full_cambium]:-}" "$t")
done

# Every run did its work: the writes are all there.
for check in "plain-wal.db" "plain-full.db"; do
	got=$("$SQLITE" "$check" "SELECT count(*) FROM w")
	[ "$got" = "$WRITES" ] || { echo "bench: $check has $got rows, want $WRITES" >&2; exit 1; }
done
for d in cambium-normal cambium-full; do
	got=$({ cambium w.db "$work/$d"; echo "SELECT count(*) FROM w;"; } | "$SQLITE" -batch)
	[ "$got" = "$WRITES" ] || { echo "bench: $d has $got rows, want $WRITES" >&2; exit 1; }
done

report() { # report LABEL OPS KEY
	awk -v label="$1" -v ops="$2" -v p="${ns[${3}_plain]}" -v c="${ns[${3}_cambium]}" 'BEGIN {
		printf "%-44s %10.0f/s %10.0f/s %7.2fx\n", label, ops / (p / 1e9), ops / (c / 1e9), p / c }'
}
echo "sqlite3 $("$SQLITE" -version | cut -d' ' -f1), best of $REPEAT, files in $work"
printf "%-44s %12s %12s %8s\n" "workload" "plain file" "cambium" "ratio"
report "point SELECTs ($READS, indexed)" "$READS" read
report "write txns ($WRITES): WAL+NORMAL vs NORMAL" "$WRITES" normal
report "write txns ($WRITES): rollback+FULL vs FULL" "$WRITES" full
