package segment

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
)

// countingReaderAt counts ReadAt calls, so tests can assert "one ranged read".
type countingReaderAt struct {
	r     io.ReaderAt
	calls atomic.Int64
	bytes atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls.Add(1)
	n, err := c.r.ReadAt(p, off)
	c.bytes.Add(int64(n))
	return n, err
}

// page returns a deterministic page image for page p.
func testPage(pageSize int, p PageNo, seed uint64) []byte {
	b := make([]byte, pageSize)
	r := rand.New(rand.NewPCG(seed, uint64(p)))
	// Half random, half repetitive, so compression has something to do.
	for i := range b[:pageSize/2] {
		b[i] = byte(r.Uint32())
	}
	for i := pageSize / 2; i < pageSize; i++ {
		b[i] = byte(p) + byte(i%7)
	}
	return b
}

// build writes a segment of the given pages and returns its bytes and the
// footer Finish returned.
func build(tb testing.TB, pageSize int, opts Options, pages map[PageNo][]byte) ([]byte, *Footer) {
	tb.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, pageSize, opts)
	if err != nil {
		tb.Fatal(err)
	}
	nums := make([]PageNo, 0, len(pages))
	for p := range pages {
		nums = append(nums, p)
	}
	slices.Sort(nums)
	for _, p := range nums {
		if err := w.Add(p, pages[p]); err != nil {
			tb.Fatal(err)
		}
	}
	f, err := w.Finish()
	if err != nil {
		tb.Fatal(err)
	}
	if f.Size != int64(buf.Len()) || w.Size() != f.Size {
		tb.Fatalf("footer says %d bytes, writer %d, wrote %d", f.Size, w.Size(), buf.Len())
	}
	return buf.Bytes(), f
}

func samplePages(pageSize int, nums ...PageNo) map[PageNo][]byte {
	m := make(map[PageNo][]byte, len(nums))
	for _, p := range nums {
		m[p] = testPage(pageSize, p, 1)
	}
	return m
}

func TestWriter_Add(t *testing.T) {
	newW := func(t *testing.T) *Writer {
		w, err := NewWriter(io.Discard, 4096, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	page := make([]byte, 4096)
	t.Run("OK", func(t *testing.T) {
		w := newW(t)
		for _, p := range []PageNo{1, 2, 5, 1 << 31, 1<<32 - 1} {
			if err := w.Add(p, page); err != nil {
				t.Fatalf("add %d: %v", p, err)
			}
		}
	})
	t.Run("ErrOutOfOrder", func(t *testing.T) {
		w := newW(t)
		if err := w.Add(0, page); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("page 0: got %v", err)
		}
		if err := w.Add(3, page); err != nil {
			t.Fatal(err)
		}
		for _, p := range []PageNo{3, 2, 1} {
			if err := w.Add(p, page); !errors.Is(err, ErrOutOfOrder) {
				t.Fatalf("page %d after 3: got %v", p, err)
			}
		}
	})
	t.Run("ErrPageSize", func(t *testing.T) {
		w := newW(t)
		for _, n := range []int{0, 4095, 4097, 8192} {
			if err := w.Add(1, make([]byte, n)); !errors.Is(err, ErrPageSize) {
				t.Fatalf("%d-byte page: got %v", n, err)
			}
		}
		for _, n := range []int{0, 256, 511, 1000, 65537, 131072} {
			if _, err := NewWriter(io.Discard, n, Options{}); !errors.Is(err, ErrPageSize) {
				t.Fatalf("NewWriter(page size %d): got %v", n, err)
			}
		}
	})
	t.Run("ErrFinished", func(t *testing.T) {
		w := newW(t)
		if err := w.Add(1, page); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(2, page); !errors.Is(err, ErrFinished) {
			t.Fatalf("add after finish: got %v", err)
		}
		if _, err := w.Finish(); !errors.Is(err, ErrFinished) {
			t.Fatalf("second finish: got %v", err)
		}
	})
	t.Run("ErrOptions", func(t *testing.T) {
		for _, o := range []Options{{FramePages: -1}, {FrameBytes: -5}, {FrameBytes: MaxFrameBytes + 1}, {Level: 99}} {
			if _, err := NewWriter(io.Discard, 4096, o); !errors.Is(err, ErrOptions) {
				t.Fatalf("%+v: got %v", o, err)
			}
		}
	})
	t.Run("ErrOutputFailed", func(t *testing.T) {
		boom := errors.New("disk full")
		w, err := NewWriter(&failWriter{after: HeaderSize + 10, err: boom}, 4096, Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = w.Add(1, page)
		if err == nil {
			err = w.Add(2, page) // flushes frame 1, which fails
		}
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want the output's error", err)
		}
		if err := w.Add(3, page); !errors.Is(err, ErrFinished) {
			t.Fatalf("add after failure: got %v", err)
		}
		if _, err := w.Finish(); !errors.Is(err, ErrFinished) {
			t.Fatalf("finish after failure: got %v", err)
		}
	})
}

type failWriter struct {
	after   int
	written int
	err     error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if w.written+len(p) > w.after {
		n := w.after - w.written
		w.written = w.after
		return n, w.err
	}
	w.written += len(p)
	return len(p), nil
}

func TestFooter_RoundTrip(t *testing.T) {
	sets := map[string][]PageNo{
		"empty":  nil,
		"one":    {1},
		"dense":  seq(1, 100),
		"sparse": {2, 3, 4, 9, 10, 100, 101, 102, 103, 5000, 70000, 1<<32 - 1},
	}
	for _, pageSize := range []int{512, 1024, 2048, 4096, 8192, 16384, 32768, 65536} {
		for _, opts := range []Options{{}, {FramePages: 1}, {FramePages: 4, FrameBytes: MaxFrameBytes}, {FrameBytes: 3 * pageSize}} {
			for name, nums := range sets {
				t.Run(fmt.Sprintf("page=%d/frame=%d-%d/%s", pageSize, opts.FramePages, opts.FrameBytes, name), func(t *testing.T) {
					pages := samplePages(pageSize, nums...)
					data, wrote := build(t, pageSize, opts, pages)
					r := &countingReaderAt{r: bytes.NewReader(data)}
					f, err := ReadFooter(r, int64(len(data)))
					if err != nil {
						t.Fatal(err)
					}
					if r.calls.Load() != 1 {
						t.Errorf("ReadFooter made %d reads, want 1", r.calls.Load())
					}
					if !f.Pages.Equals(wrote.Pages) || !slices.Equal(f.Frames, wrote.Frames) ||
						f.PageSize != pageSize || f.Salt != wrote.Salt || f.Size != wrote.Size || f.FooterOffset != wrote.FooterOffset {
						t.Fatalf("decoded footer differs from written one:\n got %+v\nwant %+v", f, wrote)
					}
					if f.PageCount() != len(nums) {
						t.Fatalf("page count %d, want %d", f.PageCount(), len(nums))
					}
					checkFrames(t, f, opts)
					for _, p := range nums {
						r.calls.Store(0)
						got, err := f.ReadPage(r, p, nil)
						if err != nil {
							t.Fatalf("page %d: %v", p, err)
						}
						if !bytes.Equal(got, pages[p]) {
							t.Fatalf("page %d: wrong bytes", p)
						}
						if r.calls.Load() != 1 {
							t.Fatalf("page %d took %d reads, want 1", p, r.calls.Load())
						}
					}
					var seen []PageNo
					err = f.ForEachPage(r, 3*int64(pageSize), func(p PageNo, b []byte) error {
						if !bytes.Equal(b, pages[p]) {
							return fmt.Errorf("page %d: wrong bytes", p)
						}
						seen = append(seen, p)
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(seen, nums) {
						t.Fatalf("ForEachPage saw %v, want %v", seen, nums)
					}
					if _, err := f.ReadPage(r, 1<<32-2, nil); !errors.Is(err, ErrNoPage) {
						t.Fatalf("missing page: got %v", err)
					}
				})
			}
		}
	}
}

// checkFrames asserts the frame layout rules: consecutive pages, the size
// bounds, frames back to back from the header to the footer.
func checkFrames(t *testing.T, f *Footer, opts Options) {
	t.Helper()
	opts, _ = opts.withDefaults(f.PageSize)
	perFrame := opts.maxPagesPerFrame(f.PageSize)
	off := int64(HeaderSize)
	for i, fr := range f.Frames {
		if fr.Offset != off {
			t.Fatalf("frame %d at %d, want %d", i, fr.Offset, off)
		}
		if fr.PageCount() > perFrame {
			t.Fatalf("frame %d holds %d pages, bound is %d", i, fr.PageCount(), perFrame)
		}
		for p := fr.First; p <= fr.Last && p >= fr.First; p++ {
			if !f.Pages.Contains(uint32(p)) {
				t.Fatalf("frame %d claims page %d, not in the page set", i, p)
			}
			if p == fr.Last {
				break
			}
		}
		off = fr.End()
	}
	if off != f.FooterOffset {
		t.Fatalf("frames end at %d, footer at %d", off, f.FooterOffset)
	}
}

func seq(from, to PageNo) []PageNo {
	var s []PageNo
	for p := from; p <= to; p++ {
		s = append(s, p)
	}
	return s
}

// readAll decodes a whole segment: footer, header and every page.
func readAll(data []byte) (map[PageNo][]byte, error) {
	r := bytes.NewReader(data)
	f, err := ReadFooter(r, int64(len(data)))
	if err != nil {
		return nil, err
	}
	got := map[PageNo][]byte{}
	err = f.ForEachPage(r, 0, func(p PageNo, b []byte) error {
		got[p] = bytes.Clone(b)
		return nil
	})
	return got, err
}

// Every single-byte change anywhere in a segment is detected: the header,
// each frame and the footer with its trailer are all covered by checksums.
func TestFooter_ErrCorrupt(t *testing.T) {
	pages := samplePages(512, 1, 2, 3, 7, 8, 20)
	data, _ := build(t, 512, Options{FramePages: 2}, pages)
	for i := range data {
		for _, flip := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[i] ^= flip
			got, err := readAll(bad)
			if err == nil {
				t.Fatalf("byte %d ^ %#x: no error; pages equal: %v", i, flip, equalPages(got, pages))
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: error %v does not wrap ErrCorrupt", i, flip, err)
			}
		}
	}
}

func equalPages(a, b map[PageNo][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for p, x := range a {
		if !bytes.Equal(x, b[p]) {
			return false
		}
	}
	return true
}

func TestReadFooter_Truncated(t *testing.T) {
	pages := samplePages(1024, seq(1, 9)...)
	data, _ := build(t, 1024, Options{}, pages)
	for n := range len(data) {
		if _, err := readAll(data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("first %d of %d bytes: got %v, want ErrCorrupt", n, len(data), err)
		}
		// The object's tail survives but its start is gone.
		if _, err := readAll(data[len(data)-n:]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("last %d of %d bytes: got %v, want ErrCorrupt", n, len(data), err)
		}
	}
	// Appended garbage is refused too: the trailer must end the object.
	if _, err := readAll(append(bytes.Clone(data), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("extended: got %v", err)
	}
}

func TestReadFooter_Foreign(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]byte{
		"empty":  {},
		"zeros":  make([]byte, 100000),
		"random": func() []byte { b := make([]byte, 70000); fillRand(r, b); return b }(),
		"sqlite": bytes.Join(sqlitePages(t, textBodies, 50, 4096), nil),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := readAll(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

func fillRand(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// Frames that are intact but in the wrong place, or from another segment
// with the same layout, are refused: the frame CRC is seeded with the salt
// and the first page.
func TestFooter_DecodeFrame(t *testing.T) {
	pages := samplePages(4096, 1, 2, 3, 4)
	a, fa := build(t, 4096, Options{Salt: 1}, pages)
	b, fb := build(t, 4096, Options{Salt: 2}, pages)
	if !slices.Equal(fa.Frames, fb.Frames) {
		t.Fatal("same pages, same options: frame layouts differ")
	}
	frame := func(data []byte, f *Footer, i int) []byte {
		fr := f.Frames[i]
		return data[fr.Offset:fr.End()]
	}
	t.Run("OK", func(t *testing.T) {
		got, err := fa.DecodeFrame(1, frame(a, fa, 1), nil)
		if err != nil || !bytes.Equal(got, pages[2]) {
			t.Fatalf("err %v, equal %v", err, bytes.Equal(got, pages[2]))
		}
	})
	t.Run("OtherSegment", func(t *testing.T) {
		if _, err := fa.DecodeFrame(1, frame(b, fb, 1), nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("Swapped", func(t *testing.T) {
		// Pages 1 and 2 have the same frame length here; a reader that is
		// handed frame 0's bytes for frame 1 must notice.
		if fa.Frames[0].Length == fa.Frames[1].Length {
			if _, err := fa.DecodeFrame(1, frame(a, fa, 0), nil); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v", err)
			}
		}
		if _, err := fa.DecodeFrame(1, frame(a, fa, 0)[:fa.Frames[1].Length-1], nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("short frame: got %v", err)
		}
	})
	t.Run("BadIndex", func(t *testing.T) {
		if _, err := fa.DecodeFrame(9, nil, nil); err == nil {
			t.Fatal("no error")
		}
		if err := fa.DecodeRun(2, 1, nil, nil); err == nil {
			t.Fatal("no error for an inverted run")
		}
	})
}

func TestReadFooter_LargeFooter(t *testing.T) {
	// Enough single-page frames that the footer outgrows DefaultTailRead:
	// ReadFooter then needs exactly one more read.
	n := PageNo(60000)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 512, Options{FramePages: 1, Level: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for p := PageNo(1); p <= n; p++ {
		// A random-length random prefix gives frame lengths that do not
		// compress, so the footer grows.
		page := make([]byte, 512)
		fillRand(r, page[:r.IntN(512)])
		if err := w.Add(p, page); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	cr := &countingReaderAt{r: bytes.NewReader(buf.Bytes())}
	f, err := ReadFooter(cr, int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if f.Size-f.FooterOffset <= DefaultTailRead {
		t.Fatalf("footer is %d bytes; the test needs one larger than %d", f.Size-f.FooterOffset, DefaultTailRead)
	}
	if cr.calls.Load() != 2 || len(f.Frames) != int(n) {
		t.Fatalf("%d reads and %d frames, want 2 and %d", cr.calls.Load(), len(f.Frames), n)
	}
}

// Realistic pages: a SQLite database round-trips through a segment, and a
// scan by runs reads far fewer times than there are pages.
func TestFooter_SQLitePages(t *testing.T) {
	for _, kind := range []dbKind{randomBodies, textBodies} {
		t.Run(string(kind), func(t *testing.T) {
			pages := sqlitePages(t, kind, 2000, 4096)
			m := map[PageNo][]byte{}
			for i, b := range pages {
				m[PageNo(i+1)] = b
			}
			data, f := build(t, 4096, Options{}, m)
			if len(f.Frames) != len(pages) {
				t.Fatalf("%d frames for %d pages; default is one 4 KiB page a frame", len(f.Frames), len(pages))
			}
			cr := &countingReaderAt{r: bytes.NewReader(data)}
			n := 0
			if err := f.ForEachPage(cr, 1<<20, func(p PageNo, b []byte) error {
				if !bytes.Equal(b, m[p]) {
					return fmt.Errorf("page %d differs", p)
				}
				n++
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n != len(pages) || cr.calls.Load() > int64(len(data)>>20)+3 {
				t.Fatalf("scan of %d pages saw %d with %d reads", len(pages), n, cr.calls.Load())
			}
			t.Logf("%s: %d pages, %d bytes -> %d bytes (%.2fx), footer %d bytes",
				kind, len(pages), len(pages)*4096, len(data), float64(len(pages)*4096)/float64(len(data)), f.Size-f.FooterOffset)
		})
	}
}

func TestParsePageNo(t *testing.T) {
	for _, s := range []string{"", "0", "-1", "x", "4294967296"} {
		if _, err := ParsePageNo(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
	if p, err := ParsePageNo("4294967295"); err != nil || p != 1<<32-1 || p.String() != "4294967295" {
		t.Errorf("got %v %v", p, err)
	}
}
