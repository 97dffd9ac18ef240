// Package commitlog is the write-ahead log of a Pebble instance that runs
// without one of its own: the engine's commit log, the file commits.log in
// its data directory, mapped into memory. Pebble's durable state is then
// what it has flushed to sorted tables; every write that must survive a
// crash goes through this log first.
//
// The package knows files, epochs and Pebble batches, nothing of the
// engine's keys or records: what it needs of them (the key of its position
// record, a volume's head version) the engine gives it in Options.
//
// # Design
//
// The log is a file mapped into memory (MAP_SHARED). The mapping's pages
// are the operating system's page cache, which outlives the process: once
// a batch is copied there it survives a kill, with no system call at all.
// A write then applies the batch to Pebble's memtable. That is a Buffered
// commit: the cost of a memory copy. A Durable commit (and any write whose
// loss after a power failure would break a promise, such as a push's
// claim) also syncs the log file before it is applied: one fdatasync,
// which covers every entry before it too.
//
// A write need not wait for Pebble (WriteDeferred): once its entry is in
// the log it is as safe as it will be, and the batch waits in a queue,
// in the log's order, for the log's applier goroutine, which applies
// what waits once ApplyBytes have gathered or the oldest has waited
// ApplyDelay. Anyone who reads Pebble and must see every logged batch
// calls Drain first, which applies what waits on the caller's time; a
// Write or WriteFlushed applies what waits before its own batch, and the
// log applies everything before it starts over. The copy into Pebble's
// memtable (a skiplist insert into memory the process may never have
// touched) is then off the writer's path, done in bursts on another
// core. A crash loses only the queue: the log has it all.
//
// Every logged batch also sets the position record (the value of
// Options.PositionKey): the epoch and sequence number of its own entry.
// Pebble's durable state after a crash is a prefix of the batches it was
// given (a flush writes a memtable whole), so that record says exactly
// which entries it has; Open replays the later ones, in order, then
// flushes. An entry that moves a volume's head (a commit, a pull, a reset)
// is replayed only if the volume's head is still the entry's parent
// (Options.HeadVersion). That check matters only after a power loss, when
// the log may have lost a tail that Pebble's flushed tables do not have: a
// commit whose parent is gone is not replayed, and nothing after it either.
//
// The log starts over when it is full: a Pebble flush puts every batch
// applied so far in sorted tables, after which no entry is needed, and the
// next entry is written at the start under a new epoch. Entries are found
// by walking from the start while each one is whole, of the header's epoch
// and next in sequence, so the bytes of older epochs left further on are
// never read as entries.
//
// Writes that need no log (a page fetched from the remote, a prune step,
// the pages a large transaction spills before it commits) are applied to
// Pebble directly: lost in a crash, they are fetched again, pruned again,
// or belong to a transaction that never committed. A batch too large for
// the log is applied and then flushed.
//
// The file is written with zeros (its first chunk before Open returns,
// the rest by a goroutine, from the first write on, a few chunks ahead of
// the log's end) so that no store through the mapping needs a block the
// file system might not have; a process that commits little writes little
// of it, one that only reads writes none, and the next Open goes on from
// the file's end. The same goroutine maps those chunks for writing
// (MADV_POPULATE_WRITE) before the log's end reaches them, so that a
// commit's copy does not take the mapping's first-write faults itself. A
// write that would end past what is written waits for that goroutine; if
// the file cannot grow (a full disk), the log is as long as the file and
// starts over more often.
//
// Where the file cannot be mapped, the log is kept in memory and each
// entry is also written to the file with pwrite(2): slower, as safe.
//
// # Layout
//
// The file is FileName in Options.Dir, Options.Size bytes (DefaultSize).
// All integers are big-endian; CRC is CRC-32C (Castagnoli).
//
// Header (at offset 0, 21 bytes):
//
//	offset  size  field
//	0       8     magic "CAMBCLOG"
//	8       1     format (2; format 1, written while Pebble kept a log of its own, is read too)
//	9       8     epoch
//	17      4     CRC of bytes 0..17
//
// Entries (from offset 4096, back to back, each 48 bytes and its body):
//
//	offset  size  field
//	0       4     body length N, at most 4 MiB
//	4       8     epoch
//	12      8     sequence number, from 1 in each epoch
//	20      8     volume ID (Entry.Volume); 0: the entry moves no head and is always replayed
//	28      8     version (Entry.Version)
//	36      8     parent version (Entry.Parent)
//	44      4     CRC of bytes 0..44 and the body
//	48      N     body: the Pebble batch (Batch.Repr)
//
// Position record (the value of Options.PositionKey in Pebble, 21 bytes):
// the entry of the newest logged batch Pebble has.
//
//	offset  size  field
//	0       1     format (1)
//	1       8     epoch
//	9       8     sequence number
//	17      4     CRC of bytes 0..17
//
// # Concurrency
//
// Write, WriteDeferred, WriteFlushed and Drain may be called
// concurrently: they serialise, so that the log's order is Pebble's (the
// log's mutex orders entries; the applier's, taken after it, orders
// applications). Close is called once, after the last write has
// returned, Drain, and Pebble is closed.
//
// # Example
//
//	l, err := commitlog.Open(commitlog.Options{DB: db, Dir: dir, PositionKey: key, HeadVersion: head})
//	b := db.NewBatch()
//	err = b.Set(k, v, nil)
//	err = l.Write(b, commitlog.Entry{Volume: 7, Version: 5, Parent: 4}, false)
//	...
//	err = db.Flush()
//	err = db.Close()
//	err = l.Close(err == nil)
package commitlog
