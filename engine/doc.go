// Package engine stores volumes: named, versioned, sparse arrays of
// fixed-size pages, one per SQLite database, in one Pebble instance per data
// directory.
//
// Any number of processes may open a data directory at once. The first
// holds its lock and owns its Pebble store; the others join it over a Unix
// socket in the directory, and their Volumes, Snapshots and Txns are the
// owner's, with the same semantics as in the owner's own process; when the
// owner goes away, one of them takes the directory over (share.go,
// client.go; Options.Exclusive keeps a directory to one process, and a
// second gets ErrDirLocked naming the directory and the holder). A Volume is a
// database by name. Readers pin a Snapshot, an immutable (version, page
// count) view that stays readable however far the volume moves on; the one
// writer of a volume opens a Txn on the newest snapshot, stages pages and
// truncations, and commits them as one new version, atomically, with the
// durability it asks for. The engine speaks Go errors; mapping them to
// SQLite result codes is the extension package's job.
//
// # Versions
//
// Versions are gap-free per volume: version 0 is the empty volume, each
// commit makes the next one. A snapshot of version V sees, for every page P
// up to its page count, the newest image of P written at or before V, or
// zeros if there is none (or if a later truncation cut P off).
//
// The page size belongs to a version: the first commit sets it, and only a
// commit that rewrites every page may change it (Txn.SetPageSize, what
// SQLite's VACUUM does after PRAGMA page_size), so that a snapshot at or
// after it finds an image of the new size for every page, while older
// snapshots keep reading the old size. Its remote map says so (a minimum
// page count of 0), and a replica of the old size takes it only then.
//
// # Pebble layout
//
// Every key starts with a one-byte table tag; integers are big-endian, so
// keys sort by volume, then page, then version. A volume's pages are stored
// under an 8-byte volume ID rather than its name, so keys stay short and
// fixed-width.
//
//	key                                  value
//	0x01 | "next-volume-id"              uint64 BE: the next volume ID to assign
//	0x02 | volume name                   volume record: ID, created time
//	0x03 | volume ID (8)                 head record: version, page count, page size
//	0x04 | volume ID (8) | version (8)   commit record: parent, page count, page size, time, changeset
//	0x05 | volume ID (8) | page (4) | ^version (8)
//	                                     page value: kind (1) | payload: 0 image,
//	                                     1 stub (where in the remote the image is), 2 zeros
//	                                     (see pagevalue.go)
//	0x06 | volume ID (8)                 spill record: the version and pages of a write
//	                                     transaction that spilled to disk before committing
//	0x07 | volume ID (8)                 pruned record: the version the pruner is done through
//	0x08 | volume ID (8)                 replication record: remote URL, newest pushed
//	                                     version and its remote sequence number, newest
//	                                     remote version seen, diverged flag, and a pending
//	                                     remote commit (see remote.go)
//	0x09 | "commit-log"                  commit log position: epoch and sequence number of
//	                                     the newest commit log entry applied (its format is
//	                                     the commit log's: see internal/commitlog)
//	0x0A | volume ID (8) | page (4) | ^version (8)
//	                                     location record: where in the remote the image under
//	                                     the same page key also lives, as a stub value (53
//	                                     bytes); what lets the disk budget evict it (budget.go)
//
// ^version is the bitwise complement of the version, so that for a page the
// newest image sorts first, and "the newest image of P at or before V" is a
// single SeekGE to (P, ^V).
//
// Records (volume, head, commit, spill) start with a format byte and end
// with a CRC-32C of everything before it; a record that fails its check is
// ErrCorrupt, never trusted.
//
// A commit writes its pages, its commit record and the new head in one
// Pebble batch. A write transaction larger than Options.SpillBytes writes
// its pages early, under their final keys at the version it will commit
// (invisible to every snapshot, whose versions are all lower), and records
// them in a spill record; a commit removes the spill record, an abort or a
// restart after a crash deletes the pages it names.
//
// Pebble runs without a write-ahead log of its own: the commit log is the
// store's (the file commits.log in the data directory, mapped into memory;
// its layout and design are in package engine/internal/commitlog). Every
// write that must survive a crash (commits, pulls, resets, replication
// state) is copied there before Pebble applies it, and Open replays what
// Pebble had not yet flushed to its tables. A Buffered commit costs that
// copy; a Durable one also syncs the log. A batch too large for the log,
// or the commit of a transaction that spilled, is applied and then flushed
// to Pebble's tables.
//
// A commit does not wait for Pebble to apply its batch: once logged, the
// batch waits for the commit log's applier (commitlog's WriteDeferred),
// and the new version is published with its pages in the page cache.
// Every other read of Pebble goes through Engine.settle (get, getRaw,
// newIter), which applies what waits first, so that readers, the pruner,
// pushes, pulls, collections and verification see every commit as if it
// had been applied at once. A volume's first commit, which assigns its
// ID, is applied before it returns, as are pulls and resets.
//
// # Local garbage
//
// When no snapshot can see a page image any more (a newer image of the page,
// or a truncation, at or before the oldest pinned snapshot), the pruner
// deletes it. It walks commit records in order, so its work is proportional
// to the pages changed, and it records how far it got in the pruned record
// (its own key, so that it never races a commit for the head record). It
// deletes by exact key: a commit notes, for each page it writes, which
// image it superseded when the page cache knew (the transaction read the
// page), and the pruner seeks the older image only for the other pages.
//
// # Replication
//
// A volume attached to a remote (Attach) pushes its new versions there
// (Push) and pulls the versions others pushed (Pull). The remote's object
// layout (every key, next to its parser, and what each object holds) and
// the format of remote commits and rollups belong to package
// internal/manifest (engine/internal/manifest/doc.go); the engine reads
// and writes them through it, and decides what damage to them means. A
// pull is a commit made of stubs: for each changed page, a value saying
// which segment frame holds its image. Reading a stub fetches the frame
// (fetch.go) and replaces the stubs of its pages with images. Local
// versions and remote versions share one numbering; a pulled commit covers
// a range of versions, so the local log is a chain of (parent, version]
// records, not always one version apart.
//
// The pruner never prunes past the newest pushed version of a replicating
// volume, so that Reset can always return to it: a writer that commits
// without pushing keeps every version since its last push.
//
// A replica stays warm across pulls (SetWarm): after a pull, the pages it
// had stored and the pull changed are fetched again in the background, in
// coalesced ranged reads, mostly from the level segments of the rollups
// the pull read (dense copies of the pages a block of commits changed).
//
// # Lifecycle
//
// A volume lives for years on a bill that follows its live data plus a
// retention window, not its whole history (gc.go). GC, run on demand or
// by a writer's background sync, keeps every remote version committed in
// the window and the one in force at its start (the base): it writes a
// checkpoint (a full page map) of the base and, when the newest version's
// pages are scattered enough that it pays, a compacted checkpoint of the
// newest version, its pages rewritten densely; then it deletes the
// commits, rollups, checkpoints and segments no kept version needs, none
// younger than a minimum age (a push or another collector's compaction in
// flight). Readers behind the base catch up through the newest checkpoint;
// a read of a page whose segment was deleted is served from a checkpoint
// when the remote's kept commits prove the image the same, else it is
// ErrCollected, never other bytes. Locally, the pruner deletes the commit
// records older than the window (SetRetain); page images it already
// deletes as soon as no snapshot can see them.
//
// # Disk budget
//
// Options.CacheBudget bounds the disk of the page images the data
// directory stores, every volume together, with the stubs and location
// records it keeps (budget.go has the details). Past it, a
// background evictor turns the least recently read images that are safe
// in the remote (pushed, or fetched from it: those with a location
// record) back into stubs, which reads fetch again like any stub, through
// the remote's kept maps when the segment was collected since. Recency is
// a clock with second chances over in-memory access bits. Images not yet
// pushed, and older images that only pinned snapshots read, are never
// evicted; Engine.Budget says by how much they take the directory over.
// The counts of image bytes, stubs and location records are kept in
// memory and counted again, in the background, at each Open.
//
// # Concurrency
//
// Engine, Volume and Snapshot methods are safe for concurrent use; a Txn
// belongs to one goroutine. Readers never wait for the writer: a commit
// publishes a new head after its batch is applied, and a snapshot keeps
// reading its own version meanwhile.
//
// A Volume's fields serve six concerns, each guarded on its own, and the
// engine's evictor a seventh:
//
//	concern          guarded by                        what it guards
//	snapshot pins    Volume.mu                         pins by version; the pruner's progress, its
//	                                                   claimed range and the supersessions it uses
//	the head         atomics head, committing,         the published state (immutable); the version
//	                 cacheGen, lineage, id             being applied; the page cache's generation;
//	                                                   Reset's count; the volume ID
//	writing          Volume.writer, atomic writing     the write transaction, or a pull or reset
//	                                                   moving the head
//	replication      Volume.pushMu, atomics            one push, pull, poll, reset or Log at a
//	                 replState, attached               time; the replication record; the remote
//	lazy fetch       replica.mu, Volume.fetchMu,       frames being fetched; stubs that fetched
//	                 the readahead mutex               images replace (the pruner deletes some);
//	                                                   the scan state
//	collection       Volume.gcMu                       one GC at a time in the process, and what
//	                                                   it remembers of the remote's commits
//	eviction         Engine.evictMu                    the evictor's batches against the pruner's,
//	                                                   engine-wide
//
// Locks are taken in this order, never the other way:
//
//	Volume.gcMu → Volume.pushMu → Volume.writer → Engine.idMu → the commit log's mutex
//	  → the commit log's applier mutex
//	Engine.evictMu → Volume.fetchMu (the pruner)
//
// A pull or a reset takes the writer with TryLock: it fails with ErrBusy
// rather than wait for a write transaction. Volume.mu, replica.mu, the
// readahead mutex and the cache shard mutexes are leaves: no other lock is
// taken and no I/O is done while one is held, so Snapshot, which takes
// Volume.mu, never waits for a disk or a network. Volume.fetchMu is held
// around one Pebble batch (the pruner's, exclusively, inside
// Engine.evictMu; a fetch's, shared, alone). Engine.evictMu is held around
// one batch of the evictor's, or of the pruner's with the reads of the
// kinds of the values it deletes (with a budget). Engine.mu guards the set of open volumes and closing; a
// volume's records are read under it the first time the volume is opened.
// Background work (the pruner, readahead) holds no lock across steps and
// stops when the engine closes.
//
// # Example
//
//	e, err := engine.Open(engine.Options{Dir: dir})
//	v, err := e.Volume("tenant/42.db")
//	snap := v.Snapshot()
//	txn, err := v.Begin(snap)
//	err = txn.WritePage(1, page)
//	next, err := txn.Commit(engine.Durable)
//	snap.Release()
//	buf, err := next.ReadPage(1, nil)
//	next.Release()
package engine
