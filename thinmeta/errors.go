package thinmeta

import (
	"errors"
	"fmt"
)

// Sentinel errors for what callers branch on.
var (
	// ErrNotThinMetadata: the superblock has no dm-thin magic.
	ErrNotThinMetadata = errors.New("not dm-thin metadata")
	// ErrChecksum: a block's stored checksum does not match its contents.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrCorrupt: the metadata breaks a rule of its format.
	ErrCorrupt = errors.New("corrupt metadata")
	// ErrNoSnapshot: a live pool holds no metadata snapshot where one was
	// expected, or another holder released it.
	ErrNoSnapshot = errors.New("no metadata snapshot held")
	// ErrNoDevice: no thin device has the id asked for.
	ErrNoDevice = errors.New("no such thin device")
)

// corruptf makes an error wrapping ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// BlockError says which metadata block a read or decode failed on.
type BlockError struct {
	Block uint64
	Err   error
}

func (e *BlockError) Error() string { return fmt.Sprintf("metadata block %d: %v", e.Block, e.Err) }
func (e *BlockError) Unwrap() error { return e.Err }

func atBlock(b uint64, err error) error {
	if err == nil {
		return nil
	}
	var be *BlockError
	if errors.As(err, &be) {
		return err
	}
	return &BlockError{Block: b, Err: err}
}
