package engine

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/segment"
)

// TestDecodePageValue: each kind decodes from what its encoder writes; a
// value of the wrong length for its kind, of an unknown kind, or a stub
// whose frame cannot be, is ErrCorrupt, naming the page and saying what is
// wrong, and still says which kind it claims.
func TestDecodePageValue(t *testing.T) {
	const pageSize = 512
	at := pageAt{vol: "v.db", p: 7, u: 3}
	img := bytes.Repeat([]byte{9}, pageSize)
	image := make([]byte, imageValueLen(pageSize))
	encodeImage(image, img)
	ref := manifest.SegmentRef{ID: SegmentID{1, 2, 3}, Salt: 99, Size: 1 << 20}
	fr := segment.Frame{Offset: 4096, Length: 300, First: 7, Last: 9}
	stubVal := encodeStub(nil, ref, fr)

	t.Run("OK", func(t *testing.T) {
		pv, err := decodePageValue(at, image, pageSize)
		if err != nil || pv.kind != pageImage || !bytes.Equal(pv.image, img) || &pv.image[0] != &image[1] {
			t.Fatalf("image: %+v, %v; want the image, sharing the value's bytes", pv.kind, err)
		}
		if pv, err := decodePageValue(at, encodeZero(), pageSize); err != nil || pv.kind != pageZero {
			t.Fatalf("zero: %+v, %v", pv, err)
		}
		want := stub{seg: ref.ID, salt: ref.Salt, size: ref.Size, frame: fr}
		if pv, err := decodePageValue(at, stubVal, pageSize); err != nil || pv.kind != pageStub || pv.stub != want {
			t.Fatalf("stub: %+v, %v; want %+v", pv, err, want)
		}
	})

	t.Run("ErrCorrupt", func(t *testing.T) {
		badFrame := encodeStub(nil, ref, segment.Frame{Offset: 1 << 20, Length: 300, First: 7, Last: 9})
		for _, c := range []struct {
			name string
			val  []byte
			kind pageKind
			msg  string
		}{
			{"Empty", nil, pageImage, "0-byte value, want a 512-byte image"},
			{"ShortImage", image[:pageSize], pageImage, "512-byte value of kind 0, want a 512-byte image"},
			{"LongZero", []byte{byte(pageZero), 0}, pageZero, "2-byte value of kind 2, want a 512-byte image"},
			{"UnknownKind", append([]byte{3}, img...), 3, "513-byte value of kind 3"},
			{"ShortStub", stubVal[:len(stubVal)-1], pageStub, "52-byte stub"},
			{"StubFrameOutside", badFrame, pageStub, "stub frame pages 7..9 at 1048576+300 in 1048576 bytes"},
		} {
			t.Run(c.name, func(t *testing.T) {
				pv, err := decodePageValue(at, c.val, pageSize)
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%v, want ErrCorrupt", err)
				}
				if !strings.Contains(err.Error(), `page 7 of "v.db" at version 3: `+c.msg) {
					t.Fatalf("%q does not name the page and say %q", err, c.msg)
				}
				if pv.kind != c.kind {
					t.Fatalf("kind %d, want %d", pv.kind, c.kind)
				}
			})
		}
	})
}
