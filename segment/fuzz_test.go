package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// seedSegments returns a few valid segments of different shapes for the
// fuzz corpora.
func seedSegments(tb testing.TB) [][]byte {
	var out [][]byte
	for _, c := range []struct {
		pageSize int
		opts     Options
		pages    []PageNo
	}{
		{512, Options{}, nil},
		{512, Options{}, []PageNo{1}},
		{512, Options{FramePages: 3}, []PageNo{1, 2, 3, 4, 5, 9, 10, 1000}},
		{1024, Options{FramePages: 1}, seq(1, 30)},
		{4096, Options{}, []PageNo{7, 8, 70000}},
	} {
		data, _ := build(tb, c.pageSize, c.opts, samplePages(c.pageSize, c.pages...))
		out = append(out, data)
	}
	return out
}

// checkFooter asserts what any successfully decoded footer guarantees.
func checkFooter(t *testing.T, f *Footer, size int64) {
	if f.Size != size || !ValidPageSize(f.PageSize) {
		t.Fatalf("decoded footer: size %d (object %d), page size %d", f.Size, size, f.PageSize)
	}
	off := int64(HeaderSize)
	total := 0
	for i, fr := range f.Frames {
		if fr.Offset != off || fr.Length <= FrameTrailerSize || fr.Last < fr.First || fr.First == 0 {
			t.Fatalf("frame %d: %+v (expected offset %d)", i, fr, off)
		}
		if i > 0 && fr.First <= f.Frames[i-1].Last {
			t.Fatalf("frame %d overlaps frame %d", i, i-1)
		}
		if fr.PageCount()*f.PageSize > MaxFrameBytes {
			t.Fatalf("frame %d is %d pages of %d bytes", i, fr.PageCount(), f.PageSize)
		}
		total += fr.PageCount()
		off = fr.End()
	}
	if off != f.FooterOffset || total != f.PageCount() {
		t.Fatalf("frames end at %d (footer %d), hold %d pages (set %d)", off, f.FooterOffset, total, f.PageCount())
	}
}

// FuzzDecodeFooter feeds arbitrary object tails to the footer decoder.
func FuzzDecodeFooter(f *testing.F) {
	for _, s := range seedSegments(f) {
		f.Add(s, int64(len(s)))
		f.Add(s[len(s)/2:], int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, tail []byte, size int64) {
		footer, err := DecodeFooter(tail, size)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		checkFooter(t, footer, size)
	})
}

// FuzzDecodeFooterBody reaches the footer body parser (page set and frame
// table) behind the trailer checksum: the fuzzer's bytes become a stored
// footer, and a matching trailer is made for them.
func FuzzDecodeFooterBody(f *testing.F) {
	for _, s := range seedSegments(f) {
		t := s[len(s)-TrailerSize:]
		fl := binary.BigEndian.Uint32(t[trFooterLength:])
		stored := s[len(s)-TrailerSize-int(fl) : len(s)-TrailerSize]
		f.Add(stored,
			binary.BigEndian.Uint64(t[trFooterOffset:]),
			binary.BigEndian.Uint32(t[trFooterRaw:]),
			binary.BigEndian.Uint32(t[trFrameCount:]),
			binary.BigEndian.Uint32(t[trPageCount:]),
			binary.BigEndian.Uint32(t[trPageSize:]),
			binary.BigEndian.Uint16(t[trFlags:]))
	}
	f.Fuzz(func(t *testing.T, stored []byte, footerOffset uint64, raw, frames, pages, pageSize uint32, flags uint16) {
		if footerOffset > 1<<32 {
			footerOffset %= 1 << 32 // keep the fake object size sane
		}
		tr := trailer{
			footerOffset: footerOffset,
			footerLength: uint32(len(stored)),
			footerRaw:    raw,
			frameCount:   frames,
			pageCount:    pages,
			pageSize:     pageSize,
			salt:         42,
			flags:        flags,
		}
		tail := append(bytes.Clone(stored), tr.encode(stored)...)
		size := int64(footerOffset) + int64(len(tail))
		footer, err := DecodeFooter(tail, size)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		checkFooter(t, footer, size)
	})
}

// FuzzDecodeFrame feeds arbitrary frame bytes to the frame decoder of a
// real footer, with the frame CRC made valid so that zstd decoding and
// the size checks behind it are reached.
func FuzzDecodeFrame(f *testing.F) {
	pages := samplePages(512, 1, 2, 3, 4, 5, 6, 7)
	data, footer := build(f, 512, Options{FramePages: 3}, pages)
	for i, fr := range footer.Frames {
		f.Add(uint8(i), data[fr.Offset:fr.End()-FrameTrailerSize], true)
	}
	f.Fuzz(func(t *testing.T, index uint8, body []byte, seal bool) {
		i := int(index) % len(footer.Frames)
		fr := footer.Frames[i]
		frame := bytes.Clone(body)
		if seal {
			frame = binary.BigEndian.AppendUint32(frame, frameCRC(footer.Salt, fr.First, fr.PageCount(), body))
		}
		out, err := footer.DecodeFrame(i, frame, nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if len(out) != fr.PageCount()*footer.PageSize {
			t.Fatalf("decoded %d bytes for %d pages", len(out), fr.PageCount())
		}
		if bytes.Equal(frame, data[fr.Offset:fr.End()]) {
			for p := fr.First; p <= fr.Last; p++ {
				at := int(p-fr.First) * footer.PageSize
				if !bytes.Equal(out[at:at+footer.PageSize], pages[p]) {
					t.Fatalf("intact frame %d decoded page %d wrongly", i, p)
				}
			}
		}
	})
}

// FuzzReadSegment feeds arbitrary whole objects to the full read path.
func FuzzReadSegment(f *testing.F) {
	for _, s := range seedSegments(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		footer, err := ReadFooter(r, int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		checkFooter(t, footer, int64(len(data)))
		var last PageNo
		err = footer.ForEachPage(r, 0, func(p PageNo, b []byte) error {
			if p <= last || len(b) != footer.PageSize || !footer.Pages.Contains(uint32(p)) {
				t.Fatalf("page %d after %d, %d bytes", p, last, len(b))
			}
			last = p
			return nil
		})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error does not wrap ErrCorrupt: %v", err)
		}
	})
}
