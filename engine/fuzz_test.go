package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
)

// FuzzDecodeRecords feeds arbitrary bytes to every record decoder: each
// either decodes or returns ErrCorrupt, and never panics. The CRC is
// re-sealed when the flag is set, so the parsers behind it are reached.
func FuzzDecodeRecords(f *testing.F) {
	set := roaring.BitmapOf(1, 2, 3, 1000, 70000)
	commit, _ := commitRecord{parent: 4, pageCount: 9, pageSize: 4096, time: time.Unix(1, 0), changeset: set}.encode()
	spill, _ := spillRecord{version: 3, pages: set}.encode()
	for _, seed := range [][]byte{
		commit, spill,
		headRecord{version: 5, pageCount: 2, pageSize: 512}.encode(),
		volumeRecord{id: 7, created: time.Unix(2, 0)}.encode(),
		encodePrunedRecord(9),
	} {
		f.Add(seed, false)
		f.Add(seed[:len(seed)-4], true)
	}
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		if seal {
			b = sealRecord(append([]byte(nil), b...))
		}
		check := func(err error) {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
		}
		_, err := decodeCommitRecord("commit", b)
		check(err)
		_, err = decodeSpillRecord("spill", b)
		check(err)
		_, err = decodeHeadRecord("head", b)
		check(err)
		_, err = decodeVolumeRecord("vol", b)
		check(err)
		_, err = decodePrunedRecord("pruned", b)
		check(err)
	})
}
