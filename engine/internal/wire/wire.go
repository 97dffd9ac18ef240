package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Protocol is the version of this format; hello refuses any other.
const Protocol = 1

// MaxFrame bounds a frame's length field: a stage call of a few MiB of
// pages, with room to spare.
const MaxFrame = 64 << 20

// headerLen is the bytes of a frame before its body.
const headerLen = 9

// The kinds of calls.
const (
	OpHello    byte = 0x01
	OpPin      byte = 0x02
	OpPinAt    byte = 0x03
	OpRelease  byte = 0x04
	OpRead     byte = 0x05
	OpBegin    byte = 0x06
	OpStage    byte = 0x07
	OpReadTxn  byte = 0x08
	OpPageSize byte = 0x09
	OpCommit   byte = 0x0A
	OpRollback byte = 0x0B
	OpDiscard  byte = 0x0C
	OpAdmin    byte = 0x0D
)

// The kinds of answers.
const (
	Done     byte = 0x80
	Failed   byte = 0x81
	Progress byte = 0x82
)

// ErrMalformed is returned for a frame or body that breaks the format.
var ErrMalformed = errors.New("wire: malformed message")

// Frame is one message.
type Frame struct {
	Call uint32
	Kind byte
	Body []byte
}

// ReadFrame reads one frame from r. Its body is in buf's storage when it
// fits (buf is grown otherwise) and is valid until the next ReadFrame with
// the same buf.
func ReadFrame(r *bufio.Reader, buf *[]byte) (Frame, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n < headerLen-4 || n > MaxFrame {
		return Frame{}, fmt.Errorf("%w: frame length %d", ErrMalformed, n)
	}
	body := int(n) - (headerLen - 4)
	if cap(*buf) < body {
		*buf = make([]byte, body)
	}
	b := (*buf)[:body]
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Call: binary.BigEndian.Uint32(h[4:8]), Kind: h[8], Body: b}, nil
}

// Encoder builds one frame in a byte slice. Its zero value is not usable;
// use Start.
type Encoder struct {
	b []byte
}

// Start begins a frame of kind for call in dst's storage.
func Start(dst []byte, call uint32, kind byte) Encoder {
	b := append(dst[:0], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, call)
	return Encoder{b: append(b, kind)}
}

// Uint appends a uvarint field.
func (e *Encoder) Uint(x uint64) { e.b = binary.AppendUvarint(e.b, x) }

// Bytes appends a byte-string field.
func (e *Encoder) Bytes(p []byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(p)))
	e.b = append(e.b, p...)
}

// String appends a byte-string field.
func (e *Encoder) String(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

// Finish returns the frame, its length filled in, or an error if it is
// larger than MaxFrame.
func (e *Encoder) Finish() ([]byte, error) {
	n := len(e.b) - 4
	if n > MaxFrame {
		return nil, fmt.Errorf("wire: frame of %d bytes is over the limit of %d", n, MaxFrame)
	}
	binary.BigEndian.PutUint32(e.b[:4], uint32(n))
	return e.b, nil
}

// Decoder reads the fields of a body. After the first error every field
// reads as zero and Err returns it.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder returns a decoder of body.
func NewDecoder(body []byte) *Decoder { return &Decoder{b: body} }

// Uint reads a uvarint field.
func (d *Decoder) Uint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad integer field", ErrMalformed)
		return 0
	}
	d.b = d.b[n:]
	return x
}

// Uint32 reads a uvarint field that must fit 32 bits.
func (d *Decoder) Uint32() uint32 {
	x := d.Uint()
	if x > 1<<32-1 && d.err == nil {
		d.err = fmt.Errorf("%w: %d does not fit 32 bits", ErrMalformed, x)
		return 0
	}
	return uint32(x)
}

// Bytes reads a byte-string field. The result aliases the body.
func (d *Decoder) Bytes() []byte {
	n := d.Uint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: a field of %d bytes in %d", ErrMalformed, n, len(d.b))
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// String reads a byte-string field as a string.
func (d *Decoder) String() string { return string(d.Bytes()) }

// Partial returns the first error, with fields left to read.
func (d *Decoder) Partial() error { return d.err }

// Err returns the first error, or one if fields are left over.
func (d *Decoder) Err() error {
	if d.err == nil && len(d.b) > 0 {
		return fmt.Errorf("%w: %d bytes after the last field", ErrMalformed, len(d.b))
	}
	return d.err
}
