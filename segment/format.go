package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Constants of the format; the table in doc.go is their specification.
const (
	// Magic opens the header and closes the trailer.
	Magic = "CMBS"
	// FormatVersion is the version this package writes and reads.
	FormatVersion = 1

	HeaderSize       = 24
	TrailerSize      = 48
	FrameTrailerSize = 4 // the CRC after each frame's compressed bytes

	MinPageSize = 512
	MaxPageSize = 65536

	// MaxFrameBytes bounds a frame's uncompressed size, which bounds the
	// memory a reader commits to one frame.
	MaxFrameBytes = 4 << 20
	// MaxFooterBody bounds the footer body, uncompressed: room for more
	// than ten million frames, far beyond any segment the engine writes.
	MaxFooterBody = 64 << 20

	// DefaultTailRead is how many bytes ReadFooter reads from the end of
	// the object first; footers of segments with up to about 20,000 frames
	// fit, so one read usually finds the whole footer.
	DefaultTailRead = 64 << 10

	flagFooterZstd = 1 << 0
)

// Offsets within the trailer.
const (
	trFooterOffset = 0
	trFooterLength = 8
	trFooterRaw    = 12
	trFrameCount   = 16
	trPageCount    = 20
	trPageSize     = 24
	trSalt         = 28
	trVersion      = 36
	trFlags        = 38
	trCRC          = 40
	trMagic        = 44
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the fixed header at offset 0.
type header struct {
	pageSize int
	salt     uint64
}

func (h header) encode() []byte {
	b := make([]byte, HeaderSize)
	copy(b[0:4], Magic)
	binary.BigEndian.PutUint16(b[4:6], FormatVersion)
	binary.BigEndian.PutUint32(b[8:12], uint32(h.pageSize))
	binary.BigEndian.PutUint64(b[12:20], h.salt)
	binary.BigEndian.PutUint32(b[20:24], crc32.Checksum(b[0:20], castagnoli))
	return b
}

func decodeHeader(b []byte) (header, error) {
	if len(b) < HeaderSize {
		return header{}, fmt.Errorf("%w: header is %d bytes, want %d", ErrCorrupt, len(b), HeaderSize)
	}
	if string(b[0:4]) != Magic {
		return header{}, fmt.Errorf("%w: header magic %q, want %q", ErrCorrupt, b[0:4], Magic)
	}
	if got, want := binary.BigEndian.Uint32(b[20:24]), crc32.Checksum(b[0:20], castagnoli); got != want {
		return header{}, fmt.Errorf("%w: header checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if v := binary.BigEndian.Uint16(b[4:6]); v != FormatVersion {
		return header{}, fmt.Errorf("%w: header format version %d, this reader knows %d", ErrCorrupt, v, FormatVersion)
	}
	if f := binary.BigEndian.Uint16(b[6:8]); f != 0 {
		return header{}, fmt.Errorf("%w: unknown header flags %#x", ErrCorrupt, f)
	}
	h := header{pageSize: int(binary.BigEndian.Uint32(b[8:12])), salt: binary.BigEndian.Uint64(b[12:20])}
	if !ValidPageSize(h.pageSize) {
		return header{}, fmt.Errorf("%w: header page size %d", ErrCorrupt, h.pageSize)
	}
	return h, nil
}

// trailer is the fixed trailer at the end of the object.
type trailer struct {
	footerOffset uint64
	footerLength uint32
	footerRaw    uint32
	frameCount   uint32
	pageCount    uint32
	pageSize     uint32
	salt         uint64
	flags        uint16
}

// encode returns the trailer bytes; footer is the stored footer, which the
// trailer's CRC covers.
func (t trailer) encode(footer []byte) []byte {
	b := make([]byte, TrailerSize)
	binary.BigEndian.PutUint64(b[trFooterOffset:], t.footerOffset)
	binary.BigEndian.PutUint32(b[trFooterLength:], t.footerLength)
	binary.BigEndian.PutUint32(b[trFooterRaw:], t.footerRaw)
	binary.BigEndian.PutUint32(b[trFrameCount:], t.frameCount)
	binary.BigEndian.PutUint32(b[trPageCount:], t.pageCount)
	binary.BigEndian.PutUint32(b[trPageSize:], t.pageSize)
	binary.BigEndian.PutUint64(b[trSalt:], t.salt)
	binary.BigEndian.PutUint16(b[trVersion:], FormatVersion)
	binary.BigEndian.PutUint16(b[trFlags:], t.flags)
	binary.BigEndian.PutUint32(b[trCRC:], trailerCRC(footer, b))
	copy(b[trMagic:], Magic)
	return b
}

func trailerCRC(footer, trailer []byte) uint32 {
	c := crc32.Update(0, castagnoli, footer)
	return crc32.Update(c, castagnoli, trailer[:trCRC])
}

// decodeTrailer checks everything in the trailer that can be checked
// without the footer bytes, against the object size.
func decodeTrailer(b []byte, size int64) (trailer, error) {
	if len(b) != TrailerSize {
		return trailer{}, fmt.Errorf("%w: trailer is %d bytes, want %d", ErrCorrupt, len(b), TrailerSize)
	}
	if string(b[trMagic:]) != Magic {
		return trailer{}, fmt.Errorf("%w: trailer magic %q, want %q (not a segment, or truncated)", ErrCorrupt, b[trMagic:], Magic)
	}
	if v := binary.BigEndian.Uint16(b[trVersion:]); v != FormatVersion {
		return trailer{}, fmt.Errorf("%w: format version %d, this reader knows %d", ErrCorrupt, v, FormatVersion)
	}
	t := trailer{
		footerOffset: binary.BigEndian.Uint64(b[trFooterOffset:]),
		footerLength: binary.BigEndian.Uint32(b[trFooterLength:]),
		footerRaw:    binary.BigEndian.Uint32(b[trFooterRaw:]),
		frameCount:   binary.BigEndian.Uint32(b[trFrameCount:]),
		pageCount:    binary.BigEndian.Uint32(b[trPageCount:]),
		pageSize:     binary.BigEndian.Uint32(b[trPageSize:]),
		salt:         binary.BigEndian.Uint64(b[trSalt:]),
		flags:        binary.BigEndian.Uint16(b[trFlags:]),
	}
	if t.flags&^flagFooterZstd != 0 {
		return trailer{}, fmt.Errorf("%w: unknown trailer flags %#x", ErrCorrupt, t.flags)
	}
	if !ValidPageSize(int(t.pageSize)) {
		return trailer{}, fmt.Errorf("%w: trailer page size %d", ErrCorrupt, t.pageSize)
	}
	if t.footerOffset < HeaderSize {
		return trailer{}, fmt.Errorf("%w: footer offset %d inside the header", ErrCorrupt, t.footerOffset)
	}
	if end := t.footerOffset + uint64(t.footerLength) + TrailerSize; end < t.footerOffset || end != uint64(size) {
		return trailer{}, fmt.Errorf("%w: footer at %d+%d and trailer end at %d, but the object is %d bytes (truncated or extended)",
			ErrCorrupt, t.footerOffset, t.footerLength, end, size)
	}
	if t.footerRaw > MaxFooterBody {
		return trailer{}, fmt.Errorf("%w: footer body of %d bytes exceeds %d", ErrCorrupt, t.footerRaw, MaxFooterBody)
	}
	if t.flags&flagFooterZstd == 0 && t.footerRaw != t.footerLength {
		return trailer{}, fmt.Errorf("%w: uncompressed footer stored in %d bytes but %d long", ErrCorrupt, t.footerLength, t.footerRaw)
	}
	if t.frameCount > t.pageCount || (t.frameCount == 0) != (t.pageCount == 0) {
		return trailer{}, fmt.Errorf("%w: %d frames cannot hold %d pages", ErrCorrupt, t.frameCount, t.pageCount)
	}
	// Every frame is at least 5 bytes (a byte of data and the CRC).
	if uint64(t.frameCount)*(FrameTrailerSize+1) > t.footerOffset-HeaderSize {
		return trailer{}, fmt.Errorf("%w: %d frames cannot fit in %d bytes", ErrCorrupt, t.frameCount, t.footerOffset-HeaderSize)
	}
	return t, nil
}

// frameCRC is the checksum stored after a frame's compressed bytes.
func frameCRC(salt uint64, first PageNo, count int, data []byte) uint32 {
	var seed [16]byte
	binary.BigEndian.PutUint64(seed[0:8], salt)
	binary.BigEndian.PutUint32(seed[8:12], uint32(first))
	binary.BigEndian.PutUint32(seed[12:16], uint32(count))
	c := crc32.Update(0, castagnoli, seed[:])
	return crc32.Update(c, castagnoli, data)
}

// The zstd codec. Encoder.EncodeAll and Decoder.DecodeAll are safe for
// concurrent use, so one of each per level serves the whole process.
var (
	encodersMu sync.Mutex
	encoders   = map[zstd.EncoderLevel]*zstd.Encoder{}

	frameDecoder  = sync.OnceValue(func() *zstd.Decoder { return newDecoder(MaxFrameBytes) })
	footerDecoder = sync.OnceValue(func() *zstd.Decoder { return newDecoder(MaxFooterBody) })
)

func encoderFor(level zstd.EncoderLevel) *zstd.Encoder {
	encodersMu.Lock()
	defer encodersMu.Unlock()
	if e, ok := encoders[level]; ok {
		return e
	}
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderCRC(false), // frames carry their own CRC
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		panic(fmt.Sprintf("segment: zstd encoder: %v", err)) // only for invalid static options
	}
	encoders[level] = e
	return e
}

// newDecoder returns a decoder that refuses to produce more than limit
// bytes, so corrupt input cannot make a reader allocate without bound.
func newDecoder(limit uint64) *zstd.Decoder {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(limit),
		zstd.WithDecoderMaxWindow(limit),
		zstd.IgnoreChecksum(true),
	)
	if err != nil {
		panic(fmt.Sprintf("segment: zstd decoder: %v", err)) // only for invalid static options
	}
	return d
}

// decompress decodes src, which must decompress to exactly want bytes,
// appending to dst.
func decompress(d *zstd.Decoder, dst, src []byte, want int) ([]byte, error) {
	var fh zstd.Header
	if err := fh.Decode(src); err != nil {
		return nil, fmt.Errorf("zstd header: %v", err)
	}
	// The encoder omits the content size for small inputs; when present it
	// lets a bad frame fail before any decoding. Either way the decoder's
	// memory limit bounds the work and the length is checked after.
	if fh.HasFCS && fh.FrameContentSize != uint64(want) {
		return nil, fmt.Errorf("zstd frame declares %d bytes, want %d", fh.FrameContentSize, want)
	}
	start := len(dst)
	out, err := d.DecodeAll(src, dst)
	if err != nil {
		return nil, fmt.Errorf("zstd: %v", err)
	}
	if n := len(out) - start; n != want {
		return nil, fmt.Errorf("decompressed to %d bytes, want %d", n, want)
	}
	return out, nil
}
