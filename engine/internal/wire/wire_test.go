package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrame_RoundTrip(t *testing.T) {
	e := Start(nil, 7, OpRead)
	e.Uint(3)
	e.Bytes([]byte("page"))
	e.String("vol")
	b, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	f, err := ReadFrame(bufio.NewReader(bytes.NewReader(b)), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if f.Call != 7 || f.Kind != OpRead {
		t.Fatalf("frame %d %x", f.Call, f.Kind)
	}
	d := NewDecoder(f.Body)
	if x, p, s := d.Uint(), d.Bytes(), d.String(); x != 3 || string(p) != "page" || s != "vol" || d.Err() != nil {
		t.Fatalf("fields %d %q %q %v", x, p, s, d.Err())
	}
}

func TestFrame_Malformed(t *testing.T) {
	var buf []byte
	for name, b := range map[string][]byte{
		"short length": {0, 0, 0, 4, 0, 0, 0, 1, 1},
		"too long":     {0xff, 0, 0, 0, 0, 0, 0, 1, 1},
	} {
		if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(b)), &buf); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader([]byte{0, 0, 0, 9, 0, 0, 0, 1, 1})), &buf); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated body: %v", err)
	}
	d := NewDecoder([]byte{5, 'a'})
	if d.Bytes(); !errors.Is(d.Err(), ErrMalformed) {
		t.Errorf("field past the end: %v", d.Err())
	}
	d = NewDecoder([]byte{1, 2})
	if d.Uint(); !errors.Is(d.Err(), ErrMalformed) {
		t.Errorf("left over: %v", d.Err())
	}
}

// FuzzReadFrame checks that any bytes read as frames, then as fields,
// give frames or errors, never a panic, and that a frame read re-encodes
// to its own bytes.
func FuzzReadFrame(f *testing.F) {
	e := Start(nil, 1, OpPin)
	e.String("app.db")
	e.Uint(42)
	seed, _ := e.Finish()
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 5, 0, 0, 0, 0, 0x80})
	f.Add([]byte{0, 0, 0, 6, 0, 0, 0, 9, 0x81, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		var buf []byte
		for {
			fr, err := ReadFrame(r, &buf)
			if err != nil {
				return
			}
			e := Start(nil, fr.Call, fr.Kind)
			e.b = append(e.b, fr.Body...)
			again, err := e.Finish()
			if err != nil {
				t.Fatal(err)
			}
			d := NewDecoder(fr.Body)
			for d.Err() == nil && len(d.b) > 0 {
				d.Bytes()
			}
			if len(again) != len(fr.Body)+headerLen {
				t.Fatalf("re-encoded %d bytes for a body of %d", len(again), len(fr.Body))
			}
		}
	})
}
