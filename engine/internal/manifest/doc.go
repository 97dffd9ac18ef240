// Package manifest is the format of a volume's objects in a remote store:
// the keys they live under, and the maps (remote commits and rollups) that
// say, for a range of a volume's versions, which pages changed and which
// segment frames hold their new images.
//
// The package knows keys, versions as plain numbers, and maps; it knows
// nothing of object stores, local storage or SQLite. Every key builder sits
// next to its parser (keys.go), and a parser accepts only what its builder
// formats, so that the writer of a key and its readers cannot drift apart.
// The engine decides what a damaged map means (remote or local damage); the
// decoders here only mark it, with ErrCorrupt.
//
// # Object layout
//
// A volume's objects live under one prefix, its name escaped into a single
// key part (url.PathEscape) so that no volume's keys can fall under
// another's prefix ("a" and "a/c" stay apart):
//
//	key                                                 object
//	v/<escaped name>/c/<parent, 16 hex>                 remote commit: a level-0 map
//	v/<escaped name>/r/<level, 2 hex>/<start, 16 hex>   rollup of commits start+1..start+2^level
//	v/<escaped name>/k/<version, 16 hex>                checkpoint: a full page map of version
//	v/<escaped name>/g/<listed, 16 hex>-<ID, 32 hex>    garbage list: segments found unnamed
//	v/<escaped name>/s/<segment ID, 32 hex>             segment (package segment)
//
// Hex digits are lower-case and fixed-width, so that keys sort by number.
// Each key has its builder and its parser, side by side: VolumePrefix and
// ParseVolumeKey (any key under a volume), CommitKey and ParseCommitKey,
// RollupKey and ParseRollupKey, CheckpointKey and ParseCheckpointKey,
// GarbageKey and ParseGarbageKey, SegmentKey and ParseSegmentKey;
// SegmentID's String and ParseSegmentID.
//
// A remote commit claims the successor of its parent version: it is
// created with create-if-absent (Store.Create of package remote), so of two
// writers pushing from the same parent exactly one succeeds, and a reader
// finds every commit after version X with one LIST starting at X's key. A
// remote commit covers the version range (parent, version] of the same
// numbering as local commits, so version N is the same bytes everywhere.
// Segments are written before the commit that names them, under random IDs
// (NewSegmentID), and never change. Rollups are derived data, written by
// the pusher after its claim with create-if-absent (never replaced); a
// reader that finds one missing or unreadable reads the two halves it
// merges instead. A rollup of level 2, 5, 8, 11... (L mod 3 = 2) names a
// level segment of its own: the images, at the rollup's version, of every
// page its commits changed, densely in page order, so that a reader
// catching up many commits reads their pages from a few segments, in long
// ranged reads.
//
// # Checkpoints and garbage collection
//
// A checkpoint is a full page map of one remote version K (level
// CheckpointLevel, FromSeq and Parent 0, ToSeq the sequence number of the
// commit ending at K), written by the garbage collector with
// create-if-absent. It may point into the segments of older commits, or,
// when the collector compacts, into new segments holding every page of K
// densely, in page order. B's checkpoint takes the pages that did not
// change after B from the newest compacted checkpoint, and the others (B's
// pre-images) from where they lie; when those old segments are mostly
// dead, the collector writes the pre-images densely into new segments
// too. A collector that keeps the versions from B on
// (its retention window) writes a checkpoint of B, then deletes, in this
// order, the commits ending before B, oldest first and one at a time (the
// one ending at B stays: listing from an older version finds it and so
// learns of the gap; a collection cut short leaves the newer commits, a
// chain without a hole), the rollups starting before B (only readers of
// versions before B would read them), the checkpoints
// other than B's and the newest, and last the segments that no remaining
// commit, rollup or checkpoint names, in two steps (below). Objects
// younger than the collector's minimum age are never deleted: they may
// belong to a push or a compaction in flight on another machine. Nor are
// the commits after a young one, nor the segments that a commit or
// checkpoint kept for its age names.
//
// A segment, or a checkpoint newer than B, is deleted only by a
// collection that finds it unneeded when an earlier one, which listed the
// remote at least the minimum age before, found it unneeded too. A
// collector writes what it finds unneeded in a garbage list
// (create-if-absent, under the time its listing began and a random ID); a
// later collection deletes what a list older than the minimum age names
// and it too finds unneeded, then the list. Another collector, which
// listed earlier, may be writing a checkpoint that names such a segment
// (a base checkpoint points into older segments), or may have made such
// a checkpoint the base of its shorter window: it writes within the
// minimum age of its listing (a collector whose listing is older than
// half the minimum age lists again before writing a checkpoint naming
// segments it did not write), so the later collection sees what it did.
// Garbage list encoding, big-endian:
//
//	offset  size  field
//	0       4     magic "CMBG"
//	4       1     format: 1
//	5       ...   count (uvarint, minimal), then per object, in ascending
//	              byte order, no repeats: uvarint length (1..1024), its
//	              key after the volume's prefix ("s/<segment ID>",
//	              "k/<version>")
//	end-4   4     CRC-32C of every byte before it
//
// A damaged list is deleted with the settled ones; what it named is
// listed again.
//
// A checkpoint that the collector compacts records, in a catch-up index,
// the version at which each page that changed after the base last
// changed. A reader at a version v from the base on catches up to the
// checkpoint through it: the pages whose last change is after v, read
// from the checkpoint's dense segments (CatchUp), the commits after the
// checkpoint merged on top. So the rollups that end at or before such a
// checkpoint, and their level segments, serve no reader the checkpoint
// does not serve better, and the collector deletes them with the other
// garbage (but for the left half of a block not complete yet, which a
// pusher elsewhere may merge into the block's rollup); a reader of a
// version before the checkpoint that reads a range of commits then reads
// their commits (a rollup found missing is read as its halves).
//
// A reader whose version is older than the oldest remaining commit's
// parent reads the newest checkpoint and the commits after it instead,
// and replaces its whole page map. A reader that finds the segment of a
// page's image gone re-reads the page from a checkpoint between the
// version that wrote the image and its own (the image is the same); with
// none, its version is no longer retained.
//
// # Maps
//
// A map says what changed over a range of a volume's versions and where
// the new page images live. Remote commits and rollups are both maps: a
// commit covers one push, (parent, version]; a rollup of level L covers
// 2^L consecutive commits, by their sequence numbers, and is the Merge of
// their maps. A map from version 0 is a full page map: a checkpoint.
//
// Sequence numbers count a volume's remote commits: the commit with parent
// 0 is number 1, its successor 2, and so on. A map covers the commits
// FromSeq+1..ToSeq; rollups of level L start at multiples of 2^L, so any
// range of commits splits into at most 2*log2(k) rollups (Pieces).
//
// Encoding, big-endian:
//
//	offset  size  field
//	0       4     magic "CMBM"
//	4       1     format: 1, the body (from offset 58 to the CRC) as is;
//	              2, the body zstd-compressed: uvarint length of the
//	              body, then one zstd frame holding it; 3 and 4, the
//	              same for a checkpoint with a catch-up index
//	5       1     level: 0 for a commit, L for a rollup of 2^L commits
//	              (at most MaxRollupLevel), 0xff for a checkpoint
//	6       8     fromSeq
//	14      8     toSeq
//	22      8     parent version
//	30      8     version
//	38      4     page count at version
//	42      4     page size at version (0, or a page size SQLite can use)
//	46      4     minimum page count over parent..version; 0 also for a
//	              map that rewrote every page, the only kind that may
//	              change the page size
//	50      8     time of the newest commit, unix nanoseconds
//	58      ...   changeset: uvarint length, roaring bitmap (portable)
//	        ...   segment count (uvarint), then per segment:
//	                16     segment ID
//	                8      salt (from the segment's header)
//	                uvarint segment size in bytes
//	                uvarint length, roaring bitmap: the pages this map takes
//	                       from the segment (a subset of the changeset)
//	                uvarint frame count, then per frame, ascending:
//	                       uvarint first page - (previous frame's last page + 1)
//	                       uvarint page count - 1
//	                       uvarint offset - previous frame's end (0 first)
//	                       uvarint length including the frame's CRC
//	        ...   formats 3 and 4 only, a checkpoint's catch-up index:
//	              uvarint since (a version before the checkpoint's),
//	              uvarint page count n, then n entries, pages ascending:
//	                uvarint page - (previous entry's page + 1) (0 first)
//	                uvarint version - the version the page last changed
//	                       at, which is after since
//	end-4   4     CRC-32C of every byte before it
//
// Encoders compress bodies of 1 KiB or more (format 2): a large map is
// mostly its frame table, whose entries are alike (frames of one page,
// back to back), so compression cuts the full page map a cold replica
// reads on open by about three quarters. Decoders read both formats.
//
// Every page from minimum page count + 1 to the page count is in the
// changeset (a truncation followed by growth changes pages even where
// nothing was written), so applying a map needs nothing but the map.
// A map whose page size differs from the version before it (a VACUUM
// after PRAGMA page_size) has a minimum page count of 0, and so rewrites
// every page at the new size: segments hold pages of one size (their
// header says which), and no page of the old size is read at or after
// it. Merge refuses a size change any other way (ErrCorrupt).
// Changeset pages that no segment holds are zeros. Frames listed are those
// holding at least one of the segment's pages in this map; a frame's CRC is
// seeded with the segment's salt, so a frame read at the wrong offset or
// from the wrong object fails its check.
//
// # Concurrency
//
// The functions are safe for concurrent use. A Map is a value: readers may
// share one (Locate, Encode, Merge do not change their arguments), but one
// that is being changed belongs to one goroutine.
//
// # Example
//
//	raw, err := store.Get(ctx, manifest.CommitKey(volume, parent))
//	m, err := manifest.DecodeMap(raw) // errors.Is(err, manifest.ErrCorrupt)
//	if ref, frame, zero, changed := m.Locate(page); changed && !zero {
//		key := manifest.SegmentKey(volume, ref.ID)
//		data, err := store.GetRange(ctx, key, frame.Offset, int64(frame.Length))
//	}
package manifest
