package layertar

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	xattrPAXPrefix = "SCHILY.xattr."
	copyBufSize    = 32 << 10
)

// DecompressStream returns r decompressed according to its first bytes:
// gzip, zstd and bzip2 are decoded, anything else passes through as a
// plain tar. xz is refused with an "unsupported compression" error.
// Closing the result does not close r.
func DecompressStream(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, copyBufSize)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("layertar: decompress: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b, 0x08}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("layertar: decompress gzip: %w", err)
		}
		return gz, nil
	case isZstd(magic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, fmt.Errorf("layertar: decompress zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return nil, errors.New("layertar: decompress: unsupported compression xz")
	}
	return io.NopCloser(br), nil
}

// isZstd matches a zstd frame or a skippable frame (magic 0x184D2A5?).
func isZstd(m []byte) bool {
	if len(m) < 4 {
		return false
	}
	return bytes.Equal(m[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}) ||
		(m[0]&0xf0 == 0x50 && m[1] == 0x2a && m[2] == 0x4d && m[3] == 0x18)
}
