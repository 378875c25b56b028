package devmapper

import (
	"errors"
	"fmt"
	"strings"
)

// ErrStatusError means the kernel printed "Error" as a target's status: it
// could not read the pool metadata to build it. Retrying may help; the
// kernel log says why.
var ErrStatusError = errors.New(`kernel reported status "Error"`)

// PoolMode is the thin-pool's operating mode from its status.
type PoolMode int

// Pool modes. The kernel reports its out-of-metadata-space mode as
// read-only too.
const (
	PoolModeReadWrite      PoolMode = iota // "rw"
	PoolModeReadOnly                       // "ro"
	PoolModeOutOfDataSpace                 // "out_of_data_space"
	PoolModeFail                           // "Fail": all I/O fails
)

var poolModeNames = [...]string{"rw", "ro", "out_of_data_space", "Fail"}

// String gives the kernel's spelling of the mode.
func (m PoolMode) String() string { return enumName(poolModeNames[:], int(m), "PoolMode") }

// DiscardMode is how the pool handles discards.
type DiscardMode int

// Discard modes.
const (
	DiscardPassdown   DiscardMode = iota // "discard_passdown": unmap, then pass to data dev
	NoDiscardPassdown                    // "no_discard_passdown": unmap only
	IgnoreDiscard                        // "ignore_discard": discards disabled
)

var discardModeNames = [...]string{"discard_passdown", "no_discard_passdown", "ignore_discard"}

// String gives the kernel's spelling of the mode.
func (m DiscardMode) String() string { return enumName(discardModeNames[:], int(m), "DiscardMode") }

func enumName(names []string, i int, typ string) string {
	if i < 0 || i >= len(names) {
		return fmt.Sprintf("%s(%d)", typ, i)
	}
	return names[i]
}

// ThinPoolStatus is a thin-pool's parsed status line.
type ThinPoolStatus struct {
	// Mode is PoolModeFail when the kernel printed just "Fail"; every
	// other field is then zero.
	Mode          PoolMode
	TransactionID uint64

	UsedMetaBlocks, TotalMetaBlocks MetaBlocks
	UsedDataBlocks, TotalDataBlocks DataBlocks

	// HeldMetadataRoot is the metadata snapshot's root block, valid when
	// HasHeldMetadataRoot (the kernel prints "-" when none is held).
	HeldMetadataRoot    uint64
	HasHeldMetadataRoot bool

	Discard        DiscardMode
	ErrorIfNoSpace bool // error_if_no_space, else queue_if_no_space
	NeedsCheck     bool // metadata needs thin_check before reuse

	// MetadataLowWatermark is the free metadata block count that raises an
	// event; older kernels do not print it.
	MetadataLowWatermark    MetaBlocks
	HasMetadataLowWatermark bool
}

// The field order follows pool_status in drivers/md/dm-thin.c, which ends
// every field, the last included, with a space.
const (
	poolStatusWhat   = "thin-pool status"
	poolStatusFields = 8 // required: up to and including needs_check
)

// ParseThinPoolStatus parses a thin-pool status line:
//
//	<transaction id> <used>/<total metadata blocks> <used>/<total data blocks>
//	<held metadata root>|- rw|ro|out_of_data_space
//	discard_passdown|no_discard_passdown|ignore_discard
//	error_if_no_space|queue_if_no_space needs_check|- [<metadata low watermark>]
//
// or "Fail". Fields after the watermark, which newer kernels may add, are
// ignored; a malformed known field is an error wrapping ErrInvalid.
// "Error" gives ErrStatusError.
func ParseThinPoolStatus(s string) (ThinPoolStatus, error) {
	f := strings.Fields(s)
	if err := checkStatusWord(poolStatusWhat, f); err != nil {
		return ThinPoolStatus{}, err
	}
	if f[0] == "Fail" {
		return ThinPoolStatus{Mode: PoolModeFail}, nil
	}
	if len(f) < poolStatusFields {
		return ThinPoolStatus{}, badField(poolStatusWhat, "line", s,
			fmt.Errorf("want at least %d fields, got %d", poolStatusFields, len(f)))
	}
	p := statusParser{what: poolStatusWhat}
	st := ThinPoolStatus{TransactionID: p.num("transaction id", f[0])}
	used, total := p.ratio("metadata blocks", f[1])
	st.UsedMetaBlocks, st.TotalMetaBlocks = MetaBlocks(used), MetaBlocks(total)
	used, total = p.ratio("data blocks", f[2])
	st.UsedDataBlocks, st.TotalDataBlocks = DataBlocks(used), DataBlocks(total)
	st.HeldMetadataRoot, st.HasHeldMetadataRoot = p.optNum("held metadata root", f[3])
	st.Mode = PoolMode(p.word("pool mode", f[4], poolModeNames[:PoolModeFail]))
	st.Discard = DiscardMode(p.word("discard mode", f[5], discardModeNames[:]))
	st.ErrorIfNoSpace = p.word("no-space mode", f[6], []string{"queue_if_no_space", "error_if_no_space"}) == 1
	st.NeedsCheck = p.word("needs_check", f[7], []string{"-", "needs_check"}) == 1
	if len(f) > poolStatusFields {
		st.MetadataLowWatermark = MetaBlocks(p.num("metadata low watermark", f[8]))
		st.HasMetadataLowWatermark = true
	}
	if p.err != nil {
		return ThinPoolStatus{}, p.err
	}
	return st, nil
}

// ThinStatus is a thin device's parsed status line.
type ThinStatus struct {
	// Fail is set when the pool has failed ("Fail"); other fields are zero.
	Fail bool
	// Inactive is set for "-": the thin device is not open in the pool
	// (e.g. while being deleted); other fields are zero.
	Inactive bool

	MappedSectors Sectors
	// HighestMappedSector is the last sector of the highest mapped block,
	// valid when HasHighest ("-" when nothing is mapped).
	HighestMappedSector Sectors
	HasHighest          bool
}

const thinStatusWhat = "thin status"

// ParseThinStatus parses a thin status line: "<mapped sectors>
// <highest mapped sector>|-", or "Fail", or "-". Extra trailing fields are
// ignored; "Error" gives ErrStatusError.
func ParseThinStatus(s string) (ThinStatus, error) {
	f := strings.Fields(s)
	if err := checkStatusWord(thinStatusWhat, f); err != nil {
		return ThinStatus{}, err
	}
	switch f[0] {
	case "Fail":
		return ThinStatus{Fail: true}, nil
	case "-":
		return ThinStatus{Inactive: true}, nil
	}
	if len(f) < 2 {
		return ThinStatus{}, badField(thinStatusWhat, "line", s, errors.New("want 2 fields"))
	}
	p := statusParser{what: thinStatusWhat}
	st := ThinStatus{MappedSectors: Sectors(p.num("mapped sectors", f[0]))}
	highest, ok := p.optNum("highest mapped sector", f[1])
	st.HighestMappedSector, st.HasHighest = Sectors(highest), ok
	if p.err != nil {
		return ThinStatus{}, p.err
	}
	return st, nil
}

// checkStatusWord rejects an empty status and the kernel's "Error". A nil
// result guarantees f is non-empty.
func checkStatusWord(what string, f []string) error {
	switch {
	case len(f) == 0:
		return badField(what, "line", "", errors.New("empty"))
	case f[0] == "Error":
		return fmt.Errorf("%s: %w", what, ErrStatusError)
	}
	return nil
}

// statusParser parses fields in sequence, keeping the first error so the
// caller checks once at the end.
type statusParser struct {
	what string
	err  error
}

func (p *statusParser) num(field, val string) uint64 {
	if p.err != nil {
		return 0
	}
	n, err := parseNum(p.what, field, val)
	p.err = err
	return n
}

// optNum parses a number or the kernel's "-" for none.
func (p *statusParser) optNum(field, val string) (uint64, bool) {
	if val == "-" {
		return 0, false
	}
	return p.num(field, val), true
}

// ratio parses "<used>/<total>".
func (p *statusParser) ratio(field, val string) (used, total uint64) {
	u, t, ok := strings.Cut(val, "/")
	if !ok && p.err == nil {
		p.err = badField(p.what, field, val, errors.New("want used/total"))
	}
	return p.num("used "+field, u), p.num("total "+field, t)
}

// word returns the index of val in names, which spell a status keyword's
// possible values in the kernel's exact case.
func (p *statusParser) word(field, val string, names []string) int {
	for i, n := range names {
		if val == n {
			return i
		}
	}
	if p.err == nil {
		p.err = badField(p.what, field, val, fmt.Errorf("want one of %s", strings.Join(names, ", ")))
	}
	return 0
}
