package segment

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchRows is the size of the benchmark database: 10,000 rows of the
// reference schema, about 10 MB in 4 KiB pages (a fifth of the reference
// database, the same shape).
const benchRows = 10000

func benchPages(b *testing.B, kind dbKind) map[PageNo][]byte {
	pages := sqlitePages(b, kind, benchRows, 4096)
	m := make(map[PageNo][]byte, len(pages))
	for i, p := range pages {
		m[PageNo(i+1)] = p
	}
	return m
}

// BenchmarkSegment measures, on real SQLite pages, for a range of frame
// sizes: encoding speed, random page reads (decode speed, and bytes
// fetched per read: the frame's size), and the compression ratio.
//
//	go test ./segment -run '^$' -bench Segment -benchtime 2s
func BenchmarkSegment(b *testing.B) {
	for _, kind := range []dbKind{randomBodies, textBodies} {
		pages := benchPages(b, kind)
		raw := int64(len(pages) * 4096)
		for _, frameBytes := range []int{4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 256 << 10} {
			opts := Options{FrameBytes: frameBytes, FramePages: 64}
			name := fmt.Sprintf("kind=%s/frame=%dKiB", kind, frameBytes>>10)
			data, footer := build(b, 4096, opts, pages)
			ratio := float64(raw) / float64(len(data))

			b.Run(name+"/op=encode", func(b *testing.B) {
				b.SetBytes(raw)
				for b.Loop() {
					build(b, 4096, opts, pages)
				}
				b.ReportMetric(ratio, "ratio")
			})
			b.Run(name+"/op=readpage", func(b *testing.B) {
				r := &countingReaderAt{r: bytes.NewReader(data)}
				rng := rand.New(rand.NewPCG(1, 1))
				n := uint32(len(pages))
				var dst []byte
				b.SetBytes(4096)
				for b.Loop() {
					p := PageNo(1 + rng.Uint32N(n))
					var err error
					dst, err = footer.ReadPage(r, p, dst[:0])
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(r.bytes.Load())/float64(r.calls.Load()), "fetched-bytes/read")
				b.ReportMetric(ratio, "ratio")
			})
		}
		b.Run(fmt.Sprintf("kind=%s/op=scan", kind), func(b *testing.B) {
			data, footer := build(b, 4096, Options{}, pages)
			r := &countingReaderAt{r: bytes.NewReader(data)}
			b.SetBytes(raw)
			for b.Loop() {
				if err := footer.ForEachPage(r, 0, func(PageNo, []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(r.calls.Load())/float64(b.N), "reads/scan")
		})
	}
}
