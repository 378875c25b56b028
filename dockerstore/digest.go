package dockerstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid: a store file holds something of the wrong form.
var ErrInvalid = errors.New("invalid Docker store data")

// Digest is "sha256:" and 64 lowercase hex digits, the only form Docker's
// image store writes.
type Digest string

const digestPrefix = "sha256:"

// ParseDigest checks s is a sha256 digest in Docker's form.
func ParseDigest(s string) (Digest, error) {
	hexPart, ok := strings.CutPrefix(s, digestPrefix)
	if !ok || !isHex64(hexPart) {
		return "", fmt.Errorf("%w: %q is not a sha256 digest", ErrInvalid, truncate(s))
	}
	return Digest(s), nil
}

// Hex is the digest without its algorithm: a file name in the store.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), digestPrefix) }

// Short is the 12-digit id `docker images` shows.
func (d Digest) Short() string { return d.Hex()[:min(12, len(d.Hex()))] }

// DigestOf is the sha256 digest of b.
func DigestOf(b []byte) Digest {
	s := sha256.Sum256(b)
	return Digest(digestPrefix + hex.EncodeToString(s[:]))
}

// ChainIDs are the layer chain ids of diffIDs, as Docker's layer store
// keys them: the first is its diff id, each next the digest of
// "<previous chain id> <diff id>".
func ChainIDs(diffIDs []Digest) []Digest {
	chain := make([]Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			chain[i] = d
			continue
		}
		chain[i] = DigestOf([]byte(string(chain[i-1]) + " " + string(d)))
	}
	return chain
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkLayerID checks a graph-driver id as Docker makes them (a random 64
// hex digits, "-init" for a container's init layer when init is set).
func checkLayerID(s string, init bool) error {
	base := s
	if init {
		var ok bool
		if base, ok = strings.CutSuffix(s, "-init"); !ok {
			return fmt.Errorf("%w: init layer id %q does not end in -init", ErrInvalid, truncate(s))
		}
	}
	if !isHex64(base) {
		return fmt.Errorf("%w: layer id %q is not 64 hex digits", ErrInvalid, truncate(s))
	}
	return nil
}

// truncate keeps hostile strings short in messages.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
