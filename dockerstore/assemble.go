package dockerstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"

	"github.com/vbatts/tar-split/tar/storage"
)

// ErrLayerMismatch: a layer's files, put together with its tar-split
// record, are not the tar its diff id names: a file changed on the device,
// or the record is damaged. The error names the layer and, when one file
// is to blame, the file.
var ErrLayerMismatch = errors.New("layer does not match its digest")

// FileOpener opens a regular file of a layer by its tar member name,
// without following symlinks (layertar.LayerRoot).
type FileOpener interface {
	OpenFile(name string) (*os.File, error)
}

// TarSize is the length of the tar a tar-split record describes: its raw
// segments and the file payloads. Known before assembly, it lets a layer
// be streamed into an outer archive whose header needs its size.
func TarSize(record io.Reader) (int64, error) {
	up := storage.NewJSONUnpacker(record)
	var n int64
	for {
		e, err := up.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%w: tar-split record: %w", ErrInvalid, err)
		}
		switch {
		case e.Type == storage.SegmentType:
			n += int64(len(e.Payload))
		case e.Type == storage.FileType && e.Size >= 0 && e.Size <= 1<<50:
			n += e.Size
		default:
			return 0, fmt.Errorf("%w: tar-split record: entry of type %d, size %d", ErrInvalid, e.Type, e.Size)
		}
	}
}

// Assemble writes layer l's tar to w: the tar-split record's raw header
// bytes, and each file's content read from files. Every file must have
// the size and crc64 the record gives, and the whole tar the sha256 of
// l.DiffID; otherwise ErrLayerMismatch, after some bytes may have been
// written. It returns the bytes written.
func Assemble(w io.Writer, l *Layer, files FileOpener, record io.Reader) (int64, error) {
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	up := storage.NewJSONUnpacker(record)
	buf := make([]byte, 128<<10)
	crc := crc64.New(storage.CRCTable)
	for {
		e, err := up.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return cw.n, fmt.Errorf("%w: layer %s: tar-split record: %w", ErrInvalid, l.ChainID.Short(), err)
		}
		switch e.Type {
		case storage.SegmentType:
			_, err = cw.Write(e.Payload)
		case storage.FileType:
			err = copyFile(cw, crc, buf, files, e)
		default:
			err = fmt.Errorf("%w: tar-split record: entry of type %d", ErrInvalid, e.Type)
		}
		if err != nil {
			return cw.n, fmt.Errorf("layer %s (%s): %w", l.ChainID.Short(), l.CacheID, err)
		}
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != string(l.DiffID) {
		return cw.n, fmt.Errorf("%w: layer %s (%s) reassembles to %s, its diff id is %s", ErrLayerMismatch, l.ChainID.Short(), l.CacheID, got, l.DiffID)
	}
	return cw.n, nil
}

// copyFile writes one file's content: exactly e.Size bytes, crc checked.
func copyFile(w io.Writer, crc interface {
	io.Writer
	Sum([]byte) []byte
	Reset()
}, buf []byte, files FileOpener, e *storage.Entry) error {
	if e.Size == 0 {
		return nil // hard links, empty files: nothing stored
	}
	name := e.GetName()
	f, err := files.OpenFile(name)
	if err != nil {
		return fmt.Errorf("%w: file %q: %w", ErrLayerMismatch, name, err)
	}
	defer f.Close()
	crc.Reset()
	n, err := io.CopyBuffer(io.MultiWriter(w, crc), io.LimitReader(f, e.Size), buf)
	if err != nil {
		return fmt.Errorf("file %q: %w", name, err)
	}
	if n < e.Size {
		return fmt.Errorf("%w: file %q has %d bytes, the layer's tar had %d", ErrLayerMismatch, name, n, e.Size)
	}
	if extra, _ := f.Read(buf[:1]); extra > 0 {
		return fmt.Errorf("%w: file %q is larger than the %d bytes the layer's tar had", ErrLayerMismatch, name, e.Size)
	}
	if !bytes.Equal(crc.Sum(nil), e.Payload) {
		return fmt.Errorf("%w: file %q differs from the layer's tar (crc64)", ErrLayerMismatch, name)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
