package engine

import (
	"encoding/binary"
	"fmt"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/segment"
)

// Page values are the values of page keys (table 0x05, see doc.go): a kind
// byte, then a payload whose length the kind fixes. Integers are
// big-endian.
//
//	kind  name   length          payload
//	0     image  1 + page size   the page image
//	1     stub   53              where in the remote the image is: segment ID (16)
//	                             | segment salt (8) | segment size (8) | frame offset (8)
//	                             | frame length (4) | frame first page (4) | frame last page (4);
//	                             the frame holds the page, and lies within the segment
//	2     zero   1               none: the page is all zeros
//
// A commit writes images; a pull writes stubs, and zeros for the pages it
// clears. Reading a stub fetches its frame with one ranged GET, verifies
// it, and replaces with images the stubs of every page of the frame that
// still point to it (fetch.go).
//
// A value of another length or kind is local damage: decodePageValue, the
// one place that tells the kinds apart, returns ErrCorrupt for it.
const (
	pageImage pageKind = 0
	pageStub  pageKind = 1
	pageZero  pageKind = 2

	stubValueLen = 1 + 16 + 8 + 8 + 8 + 4 + 4 + 4
)

// pageKind is a page value's first byte.
type pageKind byte

// pageValue is a decoded page value.
type pageValue struct {
	kind  pageKind
	image []byte // kind pageImage: the page, sharing the value's bytes
	stub  stub   // kind pageStub
}

// stub is a stub's payload: the segment frame that holds a page's image.
type stub struct {
	seg   SegmentID
	salt  uint64
	size  int64
	frame segment.Frame
}

// pageAt names a page value in errors: page p of volume vol (when known)
// written at version u. It is formatted only for an error, so that
// decoding costs no allocation.
type pageAt struct {
	vol string
	p   PageNo
	u   Version
}

func (a pageAt) String() string {
	if a.vol == "" {
		return fmt.Sprintf("page %d at version %d", a.p, a.u)
	}
	return fmt.Sprintf("page %d of %q at version %d", a.p, a.vol, a.u)
}

// decodePageValue decodes page value b of a volume of pageSize-byte pages.
// A value of the wrong length for its kind, of an unknown kind, or a stub
// whose frame cannot hold its pages, is ErrCorrupt, naming at; even then,
// kind is the kind the value claims (image for an empty value), so that a
// caller that looks for one kind only can pass over damage to the others.
// It neither allocates nor copies: an image shares b's bytes.
func decodePageValue(at pageAt, b []byte, pageSize int) (pageValue, error) {
	if len(b) == 0 {
		return pageValue{}, fmt.Errorf("%w: %s: 0-byte value, want a %d-byte image", ErrCorrupt, at, pageSize)
	}
	switch k := pageKind(b[0]); {
	case k == pageImage && len(b) == 1+pageSize:
		return pageValue{kind: k, image: b[1:]}, nil
	case k == pageZero && len(b) == 1:
		return pageValue{kind: k}, nil
	case k == pageStub:
		if len(b) != stubValueLen {
			return pageValue{kind: k}, fmt.Errorf("%w: %s: %d-byte stub", ErrCorrupt, at, len(b))
		}
		s := stub{
			salt: binary.BigEndian.Uint64(b[17:]),
			size: int64(binary.BigEndian.Uint64(b[25:])),
			frame: segment.Frame{
				Offset: int64(binary.BigEndian.Uint64(b[33:])),
				Length: binary.BigEndian.Uint32(b[41:]),
				First:  PageNo(binary.BigEndian.Uint32(b[45:])),
				Last:   PageNo(binary.BigEndian.Uint32(b[49:])),
			},
		}
		copy(s.seg[:], b[1:17])
		if s.frame.Last < s.frame.First || s.frame.Length < segment.FrameTrailerSize || s.frame.End() > s.size {
			return pageValue{kind: k}, fmt.Errorf("%w: %s: stub frame pages %d..%d at %d+%d in %d bytes",
				ErrCorrupt, at, s.frame.First, s.frame.Last, s.frame.Offset, s.frame.Length, s.size)
		}
		return pageValue{kind: k, stub: s}, nil
	default:
		return pageValue{kind: k}, fmt.Errorf("%w: %s: %d-byte value of kind %d, want a %d-byte image",
			ErrCorrupt, at, len(b), k, pageSize)
	}
}

// imageValueLen is the length of the value of a pageSize-byte image.
func imageValueLen(pageSize int) int { return 1 + pageSize }

// encodeImage writes the value of page image img into dst, which must be
// imageValueLen(len(img)) bytes: callers size it so, often as Pebble's
// Batch.SetDeferred allocates it, so that an image is copied once, into
// the batch.
func encodeImage(dst, img []byte) {
	dst[0] = byte(pageImage)
	copy(dst[1:], img)
}

// encodeStub appends the value of a stub for frame fr of segment ref.
func encodeStub(dst []byte, ref manifest.SegmentRef, fr segment.Frame) []byte {
	dst = append(dst, byte(pageStub))
	dst = append(dst, ref.ID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, ref.Salt)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ref.Size))
	dst = binary.BigEndian.AppendUint64(dst, uint64(fr.Offset))
	dst = binary.BigEndian.AppendUint32(dst, fr.Length)
	dst = binary.BigEndian.AppendUint32(dst, uint32(fr.First))
	return binary.BigEndian.AppendUint32(dst, uint32(fr.Last))
}

// encodeZero returns the value of an all-zeros page.
func encodeZero() []byte { return []byte{byte(pageZero)} }
