// Package wire is the format of the messages between the process that owns
// a data directory and the other processes that open it (see the engine's
// share.go and client.go): frames on a Unix stream socket, each a call or
// an answer. It knows bytes and fields, nothing of volumes or pages beyond
// the numbers the table names.
//
// # Frames
//
// Every message is one frame; integers are big-endian.
//
//	offset  size  field
//	0       4     length n of the rest of the frame: 5 <= n <= MaxFrame
//	4       4     call number: the caller's, repeated in every answer to it;
//	              0 in a call that wants no answer
//	8       1     kind: a call's operation (below), or an answer's kind:
//	              0x80 done, 0x81 failed, 0x82 progress (more follow)
//	9       n-5   body: the kind's fields, in order
//
// Fields are unsigned varints (uvarint, as encoding/binary writes them),
// and byte strings (a uvarint length, then the bytes). A body with fields
// left over, or one that ends inside a field, is malformed: the receiver
// closes the connection.
//
// # Calls
//
//	kind  operation  call fields                     done fields
//	0x01  hello      protocol, pid, session          protocol, pid, sequence file,
//	                 (0: a new one)                  session
//	0x02  pin        volume, known version           pin (below)
//	0x03  pin at     volume, version                 handle, version, page count, page size
//	0x04  release    handle                          (no answer)
//	0x05  read       handle, page                    image
//	0x06  begin      volume, snapshot handle         transaction handle
//	                 (the caller holds the volume's write lock)
//	0x07  stage      txn, truncate+1 (0: none),      nothing
//	                 count, count x (page, image)
//	0x08  read txn   txn, page                       image
//	0x09  page size  txn, size, length               page count
//	0x0A  commit     txn (0: begin it now), volume,  pin (below)
//	                 snapshot handle, durability,
//	                 count, count x (page, image),
//	                 known
//	0x0B  rollback   txn                             nothing
//	0x0C  discard    txn                             nothing
//	0x0D  admin      name, volume, JSON arguments    JSON result
//
// A client process has a session with the owner: the handles of the
// snapshots and transactions it holds, valid on every connection of the
// session, whose first hello asks for a new one and whose later hellos
// join it. A connection carries one call at a time (the caller reads its
// answer before it sends another); the session ends with its last
// connection, and the owner then releases what it held.
//
// A client takes a volume's write lock itself, across processes (the
// engine's writelock.go), and begins its transaction in the owner only
// when it must: at its commit, or before it stages pages, reads pages it
// staged, changes the page size or discards. Releases need no answer: a
// client sends them before its next call, in the same write.
//
// A pin answer is the version a snapshot sees and what changed since the
// version the caller knew:
//
//	handle, version, page count, page size, lineage, sequence,
//	changes: 0 exact, 1 unknown (forget every page of the volume),
//	shrink+1 (0: none; else the smallest page count in between),
//	changed pages (a roaring bitmap in its portable serialization)
//
// A failed answer is a code (the index of the sentinel error in the
// engine's table, 0 for none) and a message. A progress answer is a JSON
// body; the done or failed answer ends the call.
package wire
