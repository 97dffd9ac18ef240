// Package segment is the format of a page segment: an immutable object that
// holds page images of one volume, all of one page size, in ascending page
// order, grouped into independently compressed frames so that a reader can
// fetch any one frame, or any contiguous run of frames, with a single ranged
// read.
//
// The package knows bytes and frames, nothing of volumes, versions or object
// stores. Writers produce a segment onto an io.Writer; readers take the
// object's tail (its footer) and then read frames through an io.ReaderAt, one
// ReadAt call per frame or per run of frames, so that a ReaderAt backed by an
// object store costs one ranged GET per call.
//
// # Layout
//
// All integers are big-endian. CRC is CRC-32C (Castagnoli).
//
//	+--------+---------+---------+-----+---------+--------+---------+
//	| header | frame 0 | frame 1 | ... | frame n | footer | trailer |
//	+--------+---------+---------+-----+---------+--------+---------+
//
// Header (HeaderSize = 24 bytes, at offset 0):
//
//	offset  size  field
//	0       4     magic "CMBS"
//	4       2     format version (FormatVersion = 1)
//	6       2     flags, zero
//	8       4     page size in bytes: a power of two, 512..65536
//	12      8     salt: random per segment, repeated in the trailer
//	20      4     CRC of bytes 0..20
//
// Frame (Frame.Length bytes; frames follow the header back to back):
//
//	offset      size  field
//	0           L-4   zstd frame holding the frame's pages, concatenated
//	L-4         4     CRC of: salt (8) | first page (4) | page count (4) | bytes 0..L-4
//
// A frame holds 1 or more pages with consecutive page numbers; its
// uncompressed size is page count x page size, at most MaxFrameBytes. The
// CRC is seeded with the salt and the frame's first page, so a frame that is
// read from the wrong offset, or from another segment, fails its check even
// when its bytes are intact.
//
// Footer (at Trailer.FooterOffset, FooterLength bytes): the footer body,
// zstd-compressed when trailer flag bit 0 is set, otherwise stored as is.
// The body is
//
//	size      field
//	uvarint   B: length of the page set
//	B         page set: roaring bitmap, portable serialization
//	then, for each frame in order:
//	uvarint   page count of the frame (>= 1)
//	uvarint   frame length L in bytes, including its 4-byte CRC (>= 5)
//
// Frame offsets are implied: frame 0 starts at HeaderSize and each frame
// starts where the previous one ends. A frame's first and last pages are
// implied too: frames take the pages of the page set in ascending order,
// each as many as its page count, and those must be consecutive numbers.
//
// Trailer (TrailerSize = 48 bytes, the last bytes of the object):
//
//	offset  size  field
//	0       8     footer offset: HeaderSize + the sum of the frame lengths
//	8       4     footer length as stored
//	12      4     footer body length, uncompressed (at most MaxFooterBody)
//	16      4     frame count
//	20      4     page count
//	24      4     page size, equal to the header's
//	28      8     salt, equal to the header's
//	36      2     format version, equal to the header's
//	38      2     flags: bit 0 = footer body is zstd-compressed; others zero
//	40      4     CRC of: the stored footer bytes | trailer bytes 0..40
//	44      4     magic "CMBS"
//
// A reader finds the footer from the tail: it reads the last TrailerSize
// bytes or more (DefaultTailRead), learns the footer's offset and length,
// and reads the rest of the footer if its first read fell short. The footer
// offset plus footer length plus TrailerSize must equal the object size;
// anything else is ErrCorrupt.
//
// # Why the checksum is in the frame, not in the frame table
//
// A cold reader must load the frame table before it can read a page, so
// the table's size is paid on every cold open. Keeping each frame's CRC with
// the frame keeps the table at about two bytes per frame before compression
// (a page count and a length), which keeps the footer of a 51 MB database
// of 4 KiB pages near 25 KB; a 4-byte CRC per entry would triple it. The
// footer itself is covered by the trailer CRC, the frames by their own.
//
// # Frame size
//
// Options.FramePages and Options.FrameBytes bound a frame; a frame also ends
// wherever page numbers are not consecutive. The defaults (one 4 KiB page
// per frame; see DefaultFrameBytes) were chosen by measurement: a random
// point read fetches one frame, so its cost in bytes is the frame's size,
// and bigger frames buy little compression on SQLite pages while
// multiplying the bytes of every random read. Scans do not need big frames:
// a contiguous run of frames is one ranged read (Footer.RunRange).
//
// # Concurrency
//
// A Writer is used by one goroutine. A Footer is immutable once decoded and
// may be shared by any number of goroutines.
//
// # Example
//
//	var buf bytes.Buffer
//	w, _ := segment.NewWriter(&buf, 4096, segment.Options{})
//	_ = w.Add(1, page1)
//	_ = w.Add(2, page2)
//	footer, _ := w.Finish()
//
//	r := bytes.NewReader(buf.Bytes())
//	footer, _ = segment.ReadFooter(r, int64(buf.Len()))
//	page, _ := footer.ReadPage(r, 2, nil) // one ReadAt of page 2's frame
package segment
