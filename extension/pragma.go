package extension

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/cambiumdb/cambium/engine"
)

// JournalMode is the journal mode both adapters set on every connection
// whose main database is a Cambium volume: the pager keeps the rollback
// journal in memory. In the other modes but WAL, SQLite writes it to an
// in-memory file the VFS serves; no journal is ever on disk.
const JournalMode = "memory"

// walOnce logs the answer to journal_mode=WAL once per process.
var walOnce sync.Once

// Version is the Cambium release this build is.
const Version = "0.1.0-dev"

// Pragmas lists the cambium_* pragmas, for error messages and docs.
var Pragmas = []string{"cambium_version", "cambium_status", "cambium_stats",
	"cambium_push", "cambium_pull", "cambium_fetch", "cambium_hydrate", "cambium_reset", "cambium_gc"}

// Pragma handles PRAGMA name[=value] for SQLite's FCNTL_PRAGMA. It returns
// the result text for a Cambium pragma, an error for a refused one, and an
// error with code NotFound for pragmas SQLite handles itself (after noting
// any that Cambium must know, such as synchronous).
//
//	cambium_version  the volume version this connection sees: its snapshot's
//	                 inside a transaction, else the newest
//	cambium_status   JSON: volume, page_size, page_count, version, remote,
//	                 remote_version, pushed_version, state, cambium; with a
//	                 cache_budget, also cache_budget, cached_bytes and
//	                 over_budget_bytes, and a note saying why when over
//	cambium_stats    JSON counters for this volume in this process: page_reads,
//	                 cache_hits, remote_reads (reads that went to the remote),
//	                 hit_rate (the part that did not), pages_fetched,
//	                 frames_fetched, remote_requests, remote_bytes_read,
//	                 remote_bytes_written, commits; and for the data
//	                 directory's engine, engine_volumes (volumes held in
//	                 memory), engine_cache_bytes (images in memory),
//	                 engine_hit_rate (over its open volumes), and its disk
//	                 budget: cache_budget (0: unbounded), cached_bytes
//	                 (images stored; -1 when not counted: no budget, or
//	                 being counted at open), metadata_bytes (the disk its
//	                 stubs and location records take, an estimate; the
//	                 budget bounds it and cached_bytes together),
//	                 evictions, evicted_bytes, evicted_uncompacted_bytes
//	                 (evicted, their disk not freed yet), over_budget_bytes
//	                 (images that may not be evicted, not pushed yet, past
//	                 the budget)
//	cambium_push     push the local versions the remote lacks; JSON: from, to,
//	                 pages, segments, remote_requests, remote_bytes_written
//	cambium_pull     fast-forward to the remote's newest version (metadata
//	                 only; unless warm=off, the changed pages the replica had
//	                 stored are then fetched again in the background);
//	                 JSON: from, to, commits, pages_changed,
//	                 remote_requests, remote_bytes_read
//	cambium_fetch    learn the remote's newest version without applying it;
//	                 JSON: version, remote_version, commits, remote_requests
//	cambium_hydrate  download every page not yet local; JSON: pages, frames,
//	                 remote_requests, remote_bytes_read
//	cambium_reset    discard local versions not in the remote (a diverged
//	                 volume's) and pull; JSON: discarded, from, to,
//	                 pages_changed, remote_requests, remote_bytes_read
//	cambium_gc       collect the remote: keep every version of the window
//	                 retain= sets, compact the newest when that pays, delete
//	                 what no kept version needs and is older than min_age=;
//	                 JSON: engine.GCResult (checkpoint_version,
//	                 pages_rewritten, pre_images_rewritten,
//	                 deleted_objects, deleted_bytes,
//	                 kept_young, pending_objects, pending_bytes,
//	                 remote_objects, remote_bytes,
//	                 oldest_version, oldest_time, ...). It takes no value:
//	                 a dry run is cambium gc --dry-run.
func (f *File) Pragma(name, value string) (string, error) {
	name = strings.ToLower(name)
	value = strings.Trim(strings.TrimSpace(value), `'"`)
	switch name {
	case "journal_mode":
		if strings.EqualFold(value, "wal") {
			// What SQLite does where WAL cannot be (an in-memory
			// database): keep the mode in force and say which it is.
			// Apps and frameworks ask for WAL at every start; what they
			// want of it, readers that never wait for the writer and
			// cheap commits, Cambium's versions already give.
			walOnce.Do(func() {
				slog.Info("cambium: journal_mode=WAL asked for; Cambium keeps its own versions (readers never wait for the writer), so the journal stays in memory", "volume", f.name)
			})
			return JournalMode, nil
		}
		return "", errNotFound
	case "locking_mode":
		if strings.EqualFold(value, "exclusive") {
			return "", withCode(fmt.Errorf("%w: locking_mode=EXCLUSIVE on %q: a connection in exclusive mode never releases its write lock, so its transactions would not become versions until it closed; keep locking_mode=NORMAL (Cambium readers never block the writer anyway)", ErrUnsupported, f.name), CodeError)
		}
		return "", errNotFound
	case "synchronous":
		if value != "" {
			lvl, ok := map[string]syncLevel{"0": syncOff, "off": syncOff, "1": syncNormal, "normal": syncNormal,
				"2": syncFull, "full": syncFull, "3": syncExtra, "extra": syncExtra}[strings.ToLower(value)]
			if ok {
				f.sync = lvl
			}
		}
		return "", errNotFound
	case "cambium_version":
		if value != "" {
			return "", withCode(fmt.Errorf("pragma cambium_version takes no value"), CodeError)
		}
		return f.seenVersion().String(), nil
	case "cambium_status":
		return f.status()
	case "cambium_stats":
		return f.stats()
	case "cambium_push", "cambium_pull", "cambium_fetch", "cambium_hydrate", "cambium_reset", "cambium_gc":
		return f.replicate(name, value)
	}
	if strings.HasPrefix(name, "cambium_") {
		return "", withCode(fmt.Errorf("unknown pragma %s; Cambium knows %s", name, strings.Join(Pragmas, ", ")), CodeError)
	}
	return "", errNotFound
}

// seenVersion is the version this connection reads: its snapshot's while it
// holds a lock, else the newest.
func (f *File) seenVersion() engine.Version {
	if f.fixed != nil {
		return f.fixed.Version()
	}
	if f.txn != nil {
		return f.txn.Base()
	}
	if f.snap != nil {
		return f.snap.Version()
	}
	v, _, _ := f.vol.Head()
	return v
}

func (f *File) status() (string, error) {
	v, done, err := f.view()
	if err != nil {
		return "", err
	}
	defer done()
	head, _, _ := f.vol.Head()
	rs := f.vol.Replication()
	state := "local-only"
	switch {
	case rs.Remote == "":
	case rs.Diverged:
		state = "diverged"
	case head > rs.Pushed:
		state = "ahead"
	case rs.RemoteVersion > head:
		state = "behind"
	default:
		state = "synced"
	}
	out := map[string]any{
		"volume":         f.name,
		"page_size":      v.PageSize(),
		"page_count":     v.PageCount(),
		"version":        uint64(head),
		"remote":         rs.Remote,
		"remote_version": uint64(rs.RemoteVersion),
		"pushed_version": uint64(rs.Pushed),
		"state":          state,
		"cambium":        Version,
		"dir":            f.eng.Dir(),
	}
	if f.fixed != nil {
		out["snapshot_version"] = uint64(f.fixed.Version())
	}
	if bs := f.eng.Budget(); bs.Budget > 0 {
		out["cache_budget"] = bs.Budget
		out["cached_bytes"] = bs.CachedBytes
		out["over_budget_bytes"] = bs.OverBudget
		if bs.OverBudget > 0 {
			out["note"] = OverBudgetNote(bs, f.vol)
		}
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// OverBudgetNote says why the data directory is over its disk budget
// (bs.OverBudget > 0), and how much of that vol's unpushed versions hold.
func OverBudgetNote(bs engine.BudgetStats, vol *engine.Volume) string {
	note := fmt.Sprintf("the data directory holds %d bytes of page images and metadata over its cache_budget of %d that cannot be evicted: images not pushed yet (and older images that open transactions read)", bs.OverBudget, bs.Budget)
	if n, err := vol.UnpushedBytes(); err == nil && n > 0 {
		note += fmt.Sprintf("; this volume's unpushed versions hold %d bytes: push them (PRAGMA cambium_push, cambium push) to let them be evicted", n)
	}
	return note
}

func (f *File) stats() (string, error) {
	s := f.vol.Stats()
	r := f.vol.RemoteStats()
	m := f.eng.Memory()
	bs := f.eng.Budget()
	b, err := json.Marshal(map[string]any{
		"engine_volumes":            int64(m.Volumes),
		"engine_cache_bytes":        m.CacheBytes,
		"page_reads":                s.PageReads,
		"cache_hits":                s.CacheHits,
		"remote_reads":              s.RemoteReads,
		"hit_rate":                  s.HitRate(),
		"pages_fetched":             s.PagesFetched,
		"frames_fetched":            s.FramesFetched,
		"remote_requests":           r.Requests(),
		"remote_bytes_read":         r.BytesRead(),
		"remote_bytes_written":      r.BytesWritten(),
		"commits":                   s.Commits,
		"cache_budget":              bs.Budget,
		"cached_bytes":              bs.CachedBytes,
		"metadata_bytes":            bs.MetadataBytes,
		"evictions":                 bs.Evictions,
		"evicted_uncompacted_bytes": bs.UncompactedBytes,
		"evicted_bytes":             bs.EvictedBytes,
		"over_budget_bytes":         bs.OverBudget,
		"engine_hit_rate":           bs.HitRate,
	})
	return string(b), err
}
