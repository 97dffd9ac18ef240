package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"
)

// Frame locates one frame in a segment.
type Frame struct {
	Offset int64  // of the frame's first byte in the object
	Length uint32 // bytes, including the 4-byte CRC
	First  PageNo // first page in the frame
	Last   PageNo // last page; the frame holds every page First..Last
}

// PageCount returns the number of pages in the frame.
func (f Frame) PageCount() int { return int(f.Last-f.First) + 1 }

// End returns the offset just past the frame.
func (f Frame) End() int64 { return f.Offset + int64(f.Length) }

// Footer is a decoded segment footer: everything needed to read any page
// of the segment with one ranged read. It is immutable; do not modify its
// fields or the page set.
type Footer struct {
	PageSize     int
	Salt         uint64
	Pages        *roaring.Bitmap // the page numbers the segment holds
	Frames       []Frame         // in ascending page (and offset) order
	FooterOffset int64           // where the frames end and the footer begins
	Size         int64           // of the whole object
}

// PageCount returns the number of pages in the segment.
func (f *Footer) PageCount() int { return int(f.Pages.GetCardinality()) }

// TailSize returns how many bytes at the end of an object of size bytes the
// footer and trailer span, given at least the last TrailerSize bytes of the
// object. Callers that do their own I/O read that many bytes from the tail
// and pass them to DecodeFooter.
func TailSize(tail []byte, size int64) (int64, error) {
	if size < HeaderSize+TrailerSize || int64(len(tail)) < TrailerSize {
		return 0, fmt.Errorf("%w: %d-byte object is too short to be a segment", ErrCorrupt, size)
	}
	t, err := decodeTrailer(tail[len(tail)-TrailerSize:], size)
	if err != nil {
		return 0, err
	}
	return int64(t.footerLength) + TrailerSize, nil
}

// DecodeFooter decodes the footer of an object of size bytes from tail, the
// object's last bytes: at least TailSize of them (more are ignored).
func DecodeFooter(tail []byte, size int64) (*Footer, error) {
	need, err := TailSize(tail, size)
	if err != nil {
		return nil, err
	}
	if int64(len(tail)) < need {
		return nil, fmt.Errorf("%w: footer needs the last %d bytes, got %d", ErrCorrupt, need, len(tail))
	}
	tail = tail[int64(len(tail))-need:]
	t, err := decodeTrailer(tail[len(tail)-TrailerSize:], size)
	if err != nil {
		return nil, err
	}
	stored := tail[:t.footerLength]
	trailerBytes := tail[t.footerLength:]
	if got, want := binary.BigEndian.Uint32(trailerBytes[trCRC:]), trailerCRC(stored, trailerBytes); got != want {
		return nil, fmt.Errorf("%w: footer checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	body := stored
	if t.flags&flagFooterZstd != 0 {
		body, err = decompress(footerDecoder(), nil, stored, int(t.footerRaw))
		if err != nil {
			return nil, fmt.Errorf("%w: footer: %v", ErrCorrupt, err)
		}
	}
	return decodeFooterBody(body, t)
}

// decodeFooterBody parses and cross-checks the footer body against the
// trailer. It trusts no length before checking it.
func decodeFooterBody(body []byte, t trailer) (*Footer, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: footer: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	setLen, n := binary.Uvarint(body)
	if n <= 0 || setLen > uint64(len(body)-n) {
		return nil, corrupt("page set length unreadable or past the end")
	}
	body = body[n:]
	pages := roaring.New()
	// ReadFrom with a plain reader copies, so the bitmap does not alias body.
	if used, err := pages.ReadFrom(bytes.NewReader(body[:setLen])); err != nil {
		return nil, corrupt("page set: %v", err)
	} else if uint64(used) != setLen {
		return nil, corrupt("page set is %d bytes, stored in %d", used, setLen)
	}
	if err := pages.Validate(); err != nil {
		return nil, corrupt("page set: %v", err)
	}
	body = body[setLen:]
	if pages.GetCardinality() != uint64(t.pageCount) {
		return nil, corrupt("page set holds %d pages, trailer says %d", pages.GetCardinality(), t.pageCount)
	}
	if pages.Contains(0) {
		return nil, corrupt("page set holds page 0")
	}

	f := &Footer{
		PageSize:     int(t.pageSize),
		Salt:         t.salt,
		Pages:        pages,
		Frames:       make([]Frame, 0, t.frameCount),
		FooterOffset: int64(t.footerOffset),
		Size:         int64(t.footerOffset) + int64(t.footerLength) + TrailerSize,
	}
	maxPages := uint64(MaxFrameBytes / f.PageSize)
	it := pages.Iterator()
	offset := int64(HeaderSize)
	for i := range int(t.frameCount) {
		count, n := binary.Uvarint(body)
		if n <= 0 {
			return nil, corrupt("frame %d page count unreadable", i)
		}
		body = body[n:]
		length, n := binary.Uvarint(body)
		if n <= 0 {
			return nil, corrupt("frame %d length unreadable", i)
		}
		body = body[n:]
		if count == 0 || count > maxPages {
			return nil, corrupt("frame %d holds %d pages of %d bytes, want 1..%d", i, count, f.PageSize, maxPages)
		}
		if length <= FrameTrailerSize || length > uint64(t.footerOffset)-uint64(offset) {
			return nil, corrupt("frame %d length %d does not fit before the footer at %d", i, length, t.footerOffset)
		}
		if !it.HasNext() {
			return nil, corrupt("frame %d has no pages left in the page set", i)
		}
		first := PageNo(it.Next())
		last := first
		for range count - 1 {
			if !it.HasNext() {
				return nil, corrupt("frame %d runs past the end of the page set", i)
			}
			p := PageNo(it.Next())
			if p != last+1 {
				return nil, corrupt("frame %d pages %d and %d are not consecutive", i, last, p)
			}
			last = p
		}
		f.Frames = append(f.Frames, Frame{Offset: offset, Length: uint32(length), First: first, Last: last})
		offset += int64(length)
	}
	if it.HasNext() {
		return nil, corrupt("page set holds pages beyond the last frame")
	}
	if offset != int64(t.footerOffset) {
		return nil, corrupt("frames end at %d, footer starts at %d", offset, t.footerOffset)
	}
	if len(body) != 0 {
		return nil, corrupt("%d unexpected bytes after the frame table", len(body))
	}
	return f, nil
}

// ReadFooter reads and decodes the footer of the object of size bytes that
// r reads: one ReadAt of the last DefaultTailRead bytes, and a second only
// when the footer is larger than that.
func ReadFooter(r io.ReaderAt, size int64) (*Footer, error) {
	n := min(size, DefaultTailRead)
	if n < 0 {
		return nil, fmt.Errorf("%w: negative object size %d", ErrCorrupt, size)
	}
	tail, err := readAt(r, size-n, n)
	if err != nil {
		return nil, fmt.Errorf("read segment tail: %w", err)
	}
	need, err := TailSize(tail, size)
	if err != nil {
		return nil, err
	}
	if need > n {
		more, err := readAt(r, size-need, need-n)
		if err != nil {
			return nil, fmt.Errorf("read segment footer: %w", err)
		}
		tail = append(more, tail...)
	}
	return DecodeFooter(tail, size)
}

// FrameIndex returns the index in f.Frames of the frame holding page p, or
// ErrNoPage.
func (f *Footer) FrameIndex(p PageNo) (int, error) {
	i := sort.Search(len(f.Frames), func(i int) bool { return f.Frames[i].Last >= p })
	if i == len(f.Frames) || f.Frames[i].First > p {
		return 0, fmt.Errorf("page %d: %w", p, ErrNoPage)
	}
	return i, nil
}

// DecodeFrame verifies and decompresses frame i from data, the frame's
// exact bytes, and returns its pages concatenated in page order, appended
// to dst. Page p of the frame is at (p-First)*PageSize.
func (f *Footer) DecodeFrame(i int, data, dst []byte) ([]byte, error) {
	if i < 0 || i >= len(f.Frames) {
		return nil, fmt.Errorf("decode frame %d: segment has %d frames", i, len(f.Frames))
	}
	out, err := DecodeFrame(f.Frames[i], f.Salt, f.PageSize, data, dst)
	if err != nil {
		return nil, fmt.Errorf("frame %d: %w", i, err)
	}
	return out, nil
}

// DecodeFrame verifies and decompresses data, the exact bytes of frame fr
// of a segment whose footer has salt and pageSize, and returns its pages
// concatenated in page order, appended to dst. It is Footer.DecodeFrame for
// a caller that kept one frame's description instead of the footer (a
// page's stub); fr is checked as a footer's frames are. Errors wrap
// ErrCorrupt.
func DecodeFrame(fr Frame, salt uint64, pageSize int, data, dst []byte) ([]byte, error) {
	if fr.Last < fr.First || fr.Length < FrameTrailerSize || pageSize <= 0 || fr.PageCount() > MaxFrameBytes/pageSize {
		return nil, fmt.Errorf("%w: frame of pages %d-%d, %d bytes, %d-byte pages: not a frame",
			ErrCorrupt, fr.First, fr.Last, fr.Length, pageSize)
	}
	if len(data) != int(fr.Length) {
		return nil, fmt.Errorf("%w: frame of pages %d-%d is %d bytes, want %d (truncated read?)",
			ErrCorrupt, fr.First, fr.Last, len(data), fr.Length)
	}
	body := data[:len(data)-FrameTrailerSize]
	want := binary.BigEndian.Uint32(data[len(data)-FrameTrailerSize:])
	if got := frameCRC(salt, fr.First, fr.PageCount(), body); got != want {
		return nil, fmt.Errorf("%w: frame of pages %d-%d: checksum %08x, want %08x",
			ErrCorrupt, fr.First, fr.Last, got, want)
	}
	out, err := decompress(frameDecoder(), dst, body, fr.PageCount()*pageSize)
	if err != nil {
		return nil, fmt.Errorf("%w: frame of pages %d-%d: %v", ErrCorrupt, fr.First, fr.Last, err)
	}
	return out, nil
}

// ReadPage reads page p with exactly one ReadAt (of its whole frame),
// verifies the frame and returns the page image appended to dst.
func (f *Footer) ReadPage(r io.ReaderAt, p PageNo, dst []byte) ([]byte, error) {
	i, err := f.FrameIndex(p)
	if err != nil {
		return nil, err
	}
	fr := f.Frames[i]
	data, err := readAt(r, fr.Offset, int64(fr.Length))
	if err != nil {
		return nil, fmt.Errorf("read frame %d (pages %d-%d): %w", i, fr.First, fr.Last, err)
	}
	pages, err := f.DecodeFrame(i, data, nil)
	if err != nil {
		return nil, err
	}
	at := int(p-fr.First) * f.PageSize
	return append(dst, pages[at:at+f.PageSize]...), nil
}

// RunRange returns the byte range of frames i..j inclusive, which are
// contiguous in the object, for a single ranged read.
func (f *Footer) RunRange(i, j int) (offset, length int64) {
	return f.Frames[i].Offset, f.Frames[j].End() - f.Frames[i].Offset
}

// DecodeRun verifies and decodes frames i..j from data, the bytes of their
// RunRange, calling fn for every page in order. The page slice is only
// valid during the call.
func (f *Footer) DecodeRun(i, j int, data []byte, fn func(p PageNo, page []byte) error) error {
	if i < 0 || j >= len(f.Frames) || i > j {
		return fmt.Errorf("decode frames %d..%d: segment has %d frames", i, j, len(f.Frames))
	}
	if _, length := f.RunRange(i, j); int64(len(data)) != length {
		return fmt.Errorf("%w: frames %d..%d are %d bytes, got %d (truncated read?)", ErrCorrupt, i, j, length, len(data))
	}
	var buf []byte
	base := f.Frames[i].Offset
	for k := i; k <= j; k++ {
		fr := f.Frames[k]
		var err error
		buf, err = f.DecodeFrame(k, data[fr.Offset-base:fr.End()-base], buf[:0])
		if err != nil {
			return err
		}
		for p := fr.First; ; p++ {
			at := int(p-fr.First) * f.PageSize
			if err := fn(p, buf[at:at+f.PageSize]); err != nil {
				return err
			}
			if p == fr.Last {
				break
			}
		}
	}
	return nil
}

// ForEachPage verifies the whole segment, header included, and calls fn
// for every page in ascending order, reading runs of frames of up to about
// runBytes (0: 8 MiB) per ReadAt. The page slice is only valid during the
// call. An error from fn stops the iteration and is returned.
func (f *Footer) ForEachPage(r io.ReaderAt, runBytes int64, fn func(p PageNo, page []byte) error) error {
	if runBytes <= 0 {
		runBytes = 8 << 20
	}
	hb, err := readAt(r, 0, HeaderSize)
	if err != nil {
		return fmt.Errorf("read segment header: %w", err)
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return err
	}
	if h.pageSize != f.PageSize || h.salt != f.Salt {
		return fmt.Errorf("%w: header (page size %d, salt %016x) does not match trailer (page size %d, salt %016x)",
			ErrCorrupt, h.pageSize, h.salt, f.PageSize, f.Salt)
	}
	for i := 0; i < len(f.Frames); {
		j := i
		for j+1 < len(f.Frames) && f.Frames[j+1].End()-f.Frames[i].Offset <= runBytes {
			j++
		}
		off, n := f.RunRange(i, j)
		data, err := readAt(r, off, n)
		if err != nil {
			return fmt.Errorf("read frames %d..%d: %w", i, j, err)
		}
		if err := f.DecodeRun(i, j, data, fn); err != nil {
			return err
		}
		i = j + 1
	}
	return nil
}

// readAt reads exactly n bytes at off with one ReadAt call. A short read at
// the end of the source is reported as truncation (ErrCorrupt), since every
// range this package asks for lies inside the segment it was told about.
func readAt(r io.ReaderAt, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("%w: read of %d bytes at offset %d", ErrCorrupt, n, off)
	}
	b := make([]byte, n)
	got, err := r.ReadAt(b, off)
	if got == len(b) {
		return b, nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%w: read %d of %d bytes at offset %d (object truncated?)", ErrCorrupt, got, n, off)
	}
	return nil, err
}
