package segment

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"
)

// Defaults for Options, chosen by measurement (see the package doc and
// BenchmarkFrameSize).
const (
	// DefaultFrameBytes bounds a frame's uncompressed size. At 4 KiB a
	// frame is one page of SQLite's default page size, so a random point
	// read downloads one page; smaller page sizes share a frame up to
	// 4 KiB, larger ones get a frame each.
	DefaultFrameBytes = 4 << 10
	// DefaultFramePages bounds a frame's page count; with the default
	// FrameBytes it only matters for 512-byte pages.
	DefaultFramePages = 64
)

// Options control how a Writer groups and compresses pages. The zero value
// means the defaults.
type Options struct {
	// FramePages is the most pages one frame holds (0: DefaultFramePages).
	FramePages int
	// FrameBytes is the most uncompressed bytes one frame holds
	// (0: DefaultFrameBytes), at most MaxFrameBytes. A frame always holds
	// at least one page, so a page larger than FrameBytes gets a frame of
	// its own.
	FrameBytes int
	// Level is the zstd level (0: zstd.SpeedDefault).
	Level zstd.EncoderLevel
	// Salt identifies the segment in every frame checksum (0: random).
	Salt uint64
}

// withDefaults fills in and checks the options for pages of pageSize.
func (o Options) withDefaults(pageSize int) (Options, error) {
	if o.FramePages == 0 {
		o.FramePages = DefaultFramePages
	}
	if o.FrameBytes == 0 {
		o.FrameBytes = DefaultFrameBytes
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedDefault
	}
	if o.FramePages < 1 {
		return o, fmt.Errorf("%w: FramePages %d, want at least 1", ErrOptions, o.FramePages)
	}
	if o.FrameBytes < 1 || o.FrameBytes > MaxFrameBytes {
		return o, fmt.Errorf("%w: FrameBytes %d, want 1..%d", ErrOptions, o.FrameBytes, MaxFrameBytes)
	}
	if o.Level < zstd.SpeedFastest || o.Level > zstd.SpeedBestCompression {
		return o, fmt.Errorf("%w: zstd level %d", ErrOptions, o.Level)
	}
	if o.Salt == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return o, fmt.Errorf("segment salt: %w", err)
		}
		o.Salt = binary.BigEndian.Uint64(b[:]) | 1 // never 0, so "unset" stays distinct
	}
	return o, nil
}

// maxPagesPerFrame is how many pages of pageSize one frame may hold.
func (o Options) maxPagesPerFrame(pageSize int) int {
	n := min(o.FramePages, o.FrameBytes/pageSize, MaxFrameBytes/pageSize)
	return max(n, 1)
}

type writerState int

const (
	writerOpen     writerState = iota // accepting pages
	writerFinished                    // Finish returned; the segment is complete
	writerFailed                      // a write to the output failed; the output is unusable
)

// Writer writes one segment to an io.Writer. Pages must be added in strictly
// ascending page order; Finish writes the footer and trailer. A Writer
// refuses misuse with an error and never writes a malformed segment: after
// any error from the output, every call returns ErrFinished.
type Writer struct {
	out      io.Writer
	pageSize int
	opts     Options
	perFrame int
	state    writerState

	offset int64  // bytes written so far
	last   PageNo // last page added, 0 before the first
	buf    []byte // uncompressed pages of the open frame
	first  PageNo // first page of the open frame
	count  int    // pages in the open frame
	pages  *roaring.Bitmap
	frames []Frame
	zbuf   []byte // compressed frame scratch
}

// NewWriter starts a segment of pages of pageSize bytes on out and writes
// its header.
func NewWriter(out io.Writer, pageSize int, opts Options) (*Writer, error) {
	if !ValidPageSize(pageSize) {
		return nil, fmt.Errorf("%w: %d is not a power of two in %d..%d", ErrPageSize, pageSize, MinPageSize, MaxPageSize)
	}
	opts, err := opts.withDefaults(pageSize)
	if err != nil {
		return nil, err
	}
	w := &Writer{
		out:      out,
		pageSize: pageSize,
		opts:     opts,
		perFrame: opts.maxPagesPerFrame(pageSize),
		pages:    roaring.New(),
	}
	w.buf = make([]byte, 0, w.perFrame*pageSize)
	if err := w.write(header{pageSize: pageSize, salt: opts.Salt}.encode()); err != nil {
		return nil, err
	}
	return w, nil
}

// Add appends page p. data must be exactly one page; it is copied.
func (w *Writer) Add(p PageNo, data []byte) error {
	if w.state != writerOpen {
		return fmt.Errorf("add page %d: %w", p, ErrFinished)
	}
	if p == 0 || p <= w.last {
		return fmt.Errorf("add page %d after page %d: %w", p, w.last, ErrOutOfOrder)
	}
	if len(data) != w.pageSize {
		return fmt.Errorf("add page %d: %w: image is %d bytes, segment pages are %d", p, ErrPageSize, len(data), w.pageSize)
	}
	if w.count > 0 && (w.count == w.perFrame || p != w.last+1) {
		if err := w.flushFrame(); err != nil {
			return err
		}
	}
	if w.count == 0 {
		w.first = p
	}
	w.buf = append(w.buf, data...)
	w.count++
	w.last = p
	w.pages.Add(uint32(p))
	return nil
}

// flushFrame compresses and writes the open frame.
func (w *Writer) flushFrame() error {
	w.zbuf = encoderFor(w.opts.Level).EncodeAll(w.buf, w.zbuf[:0])
	w.zbuf = binary.BigEndian.AppendUint32(w.zbuf, frameCRC(w.opts.Salt, w.first, w.count, w.zbuf))
	f := Frame{
		Offset: w.offset,
		Length: uint32(len(w.zbuf)),
		First:  w.first,
		Last:   w.first + PageNo(w.count-1),
	}
	if err := w.write(w.zbuf); err != nil {
		return err
	}
	w.frames = append(w.frames, f)
	w.buf = w.buf[:0]
	w.count = 0
	return nil
}

// Finish writes the last frame, the footer and the trailer, and returns the
// segment's footer (as ReadFooter would decode it). The Writer cannot be
// used afterwards. It does not close or sync the output.
func (w *Writer) Finish() (*Footer, error) {
	if w.state != writerOpen {
		return nil, fmt.Errorf("finish: %w", ErrFinished)
	}
	if w.count > 0 {
		if err := w.flushFrame(); err != nil {
			return nil, err
		}
	}
	w.pages.RunOptimize()
	body, err := encodeFooterBody(w.pages, w.frames)
	if err != nil {
		w.state = writerFailed
		return nil, err
	}
	t := trailer{
		footerOffset: uint64(w.offset),
		footerRaw:    uint32(len(body)),
		frameCount:   uint32(len(w.frames)),
		pageCount:    uint32(w.pages.GetCardinality()),
		pageSize:     uint32(w.pageSize),
		salt:         w.opts.Salt,
	}
	stored := body
	if z := encoderFor(w.opts.Level).EncodeAll(body, nil); len(z) < len(body) {
		stored, t.flags = z, flagFooterZstd
	}
	t.footerLength = uint32(len(stored))
	footerOffset := w.offset
	if err := w.write(stored); err != nil {
		return nil, err
	}
	if err := w.write(t.encode(stored)); err != nil {
		return nil, err
	}
	w.state = writerFinished
	return &Footer{
		PageSize:     w.pageSize,
		Salt:         w.opts.Salt,
		Pages:        w.pages,
		Frames:       w.frames,
		FooterOffset: footerOffset,
		Size:         w.offset,
	}, nil
}

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 { return w.offset }

func (w *Writer) write(b []byte) error {
	n, err := w.out.Write(b)
	w.offset += int64(n)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.state = writerFailed
		return fmt.Errorf("write segment at offset %d: %w", w.offset, err)
	}
	return nil
}

// encodeFooterBody lays out the footer body as the package doc specifies.
func encodeFooterBody(pages *roaring.Bitmap, frames []Frame) ([]byte, error) {
	set, err := pages.ToBytes()
	if err != nil {
		return nil, fmt.Errorf("encode page set: %w", err)
	}
	b := make([]byte, 0, binary.MaxVarintLen64+len(set)+len(frames)*4)
	b = binary.AppendUvarint(b, uint64(len(set)))
	b = append(b, set...)
	for _, f := range frames {
		b = binary.AppendUvarint(b, uint64(f.Last-f.First)+1)
		b = binary.AppendUvarint(b, uint64(f.Length))
	}
	return b, nil
}
