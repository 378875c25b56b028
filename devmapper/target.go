package devmapper

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Target type names as the kernel registers them.
const (
	TypeThinPool = "thin-pool"
	TypeThin     = "thin"
	TypeLinear   = "linear"
	TypeError    = "error"
)

// Limits the kernel's dm-thin constructors enforce.
const (
	MinDataBlockSize Sectors = 128     // 64 KiB
	MaxDataBlockSize Sectors = 2097152 // 1 GiB
	// maxPoolFeatures is the most feature args pool_ctr accepts.
	maxPoolFeatures = 4
)

// ErrInvalid is wrapped by every parse or validation failure in this
// package's table and status code; the message names the bad field.
var ErrInvalid = errors.New("invalid")

// TableLine is one line of a device-mapper table: a target mapping Length
// sectors of the device, starting at Start, with type-specific Params.
type TableLine struct {
	Start, Length Sectors
	Type          string
	Params        string
}

// Target is a typed target that renders its own parameter string.
type Target interface {
	TargetType() string
	Params() string
}

// Line builds the table line mapping [start, start+length) to t.
func Line(start, length Sectors, t Target) TableLine {
	return TableLine{Start: start, Length: length, Type: t.TargetType(), Params: t.Params()}
}

// String renders the line as dmsetup prints it: "start length type params".
func (l TableLine) String() string {
	s := fmt.Sprintf("%d %d %s", uint64(l.Start), uint64(l.Length), l.Type)
	if l.Params != "" {
		s += " " + l.Params
	}
	return s
}

// ParseTableLine parses "start length type [params]". Params keep their
// inner spacing (the kernel allows backslash-escaped spaces in them) but
// lose surrounding whitespace, which the kernel leaves on some targets.
func ParseTableLine(s string) (TableLine, error) {
	start, rest := cutField(s)
	length, rest := cutField(rest)
	typ, rest := cutField(rest)
	if typ == "" {
		return TableLine{}, badField("table line", "line", s, errors.New("want start, length and type"))
	}
	l := TableLine{Type: typ, Params: strings.TrimSpace(rest)}
	n, err := parseNum("table line", "start", start)
	if err != nil {
		return TableLine{}, err
	}
	l.Start = Sectors(n)
	if n, err = parseNum("table line", "length", length); err != nil {
		return TableLine{}, err
	}
	l.Length = Sectors(n)
	if l.Length == 0 || l.Start+l.Length < l.Start {
		return TableLine{}, badField("table line", "length", length, errors.New("zero or past the end of the device"))
	}
	return l, nil
}

// cutField splits off the first whitespace-separated field of s.
func cutField(s string) (field, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// ParseTarget parses l's params according to its type. It fails for types
// this package does not model.
func ParseTarget(l TableLine) (Target, error) {
	switch l.Type {
	case TypeThinPool:
		return asTarget(ParseThinPool(l.Params))
	case TypeThin:
		return asTarget(ParseThin(l.Params))
	case TypeLinear:
		return asTarget(ParseLinear(l.Params))
	case TypeError:
		if strings.TrimSpace(l.Params) != "" {
			return nil, badField(TypeError, "params", l.Params, errors.New("want none"))
		}
		return ErrorTarget{}, nil
	}
	return nil, badField("table line", "target type", l.Type, errors.New("not supported"))
}

// asTarget keeps a failed parse from returning a non-nil Target.
func asTarget[T Target](t T, err error) (Target, error) {
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ThinPool is the thin-pool target: a pool of DataBlockSize blocks on
// DataDev, with its mappings on MetadataDev. Devices are paths or
// "major:minor". LowWaterMark is the free-block count at which the kernel
// raises an event. The bools are the optional feature args.
type ThinPool struct {
	MetadataDev, DataDev string
	DataBlockSize        Sectors
	LowWaterMark         DataBlocks

	SkipBlockZeroing  bool
	IgnoreDiscard     bool
	NoDiscardPassdown bool
	ReadOnly          bool
	ErrorIfNoSpace    bool
}

// poolFeatureNames are in the order the kernel's emit_flags prints them;
// flags returns the matching fields.
var poolFeatureNames = [...]string{
	"skip_block_zeroing", "ignore_discard", "no_discard_passdown", "read_only", "error_if_no_space",
}

func (p *ThinPool) flags() [len(poolFeatureNames)]*bool {
	return [...]*bool{&p.SkipBlockZeroing, &p.IgnoreDiscard, &p.NoDiscardPassdown, &p.ReadOnly, &p.ErrorIfNoSpace}
}

func (p ThinPool) features() []string {
	var on []string
	for i, f := range p.flags() {
		if *f {
			on = append(on, poolFeatureNames[i])
		}
	}
	return on
}

// TargetType returns "thin-pool".
func (ThinPool) TargetType() string { return TypeThinPool }

// Params renders the table params the way the kernel prints them back,
// always with a feature count, so a loaded table compares equal.
func (p ThinPool) Params() string {
	f := p.features()
	args := []string{p.MetadataDev, p.DataDev, fmtNum(p.DataBlockSize), fmtNum(p.LowWaterMark), strconv.Itoa(len(f))}
	return strings.Join(append(args, f...), " ")
}

// Validate checks what the kernel's pool constructor would reject.
func (p ThinPool) Validate() error {
	if err := checkDev(TypeThinPool, "metadata device", p.MetadataDev); err != nil {
		return err
	}
	if err := checkDev(TypeThinPool, "data device", p.DataDev); err != nil {
		return err
	}
	if p.MetadataDev == p.DataDev {
		return badField(TypeThinPool, "data device", p.DataDev, errors.New("same as metadata device"))
	}
	bs := p.DataBlockSize
	if bs < MinDataBlockSize || bs > MaxDataBlockSize || bs%MinDataBlockSize != 0 {
		return badField(TypeThinPool, "data block size", fmtNum(bs),
			fmt.Errorf("want a multiple of %d in [%d, %d] sectors", MinDataBlockSize, MinDataBlockSize, MaxDataBlockSize))
	}
	if n := len(p.features()); n > maxPoolFeatures {
		return badField(TypeThinPool, "feature count", strconv.Itoa(n), fmt.Errorf("kernel accepts at most %d", maxPoolFeatures))
	}
	return nil
}

// ParseThinPool parses thin-pool params:
// <metadata dev> <data dev> <block size> <low water mark> [<n> <feature>...].
func ParseThinPool(params string) (ThinPool, error) {
	f := strings.Fields(params)
	if len(f) < 4 {
		return ThinPool{}, badField(TypeThinPool, "params", params, errors.New("want at least 4 fields"))
	}
	p := ThinPool{MetadataDev: f[0], DataDev: f[1]}
	bs, err := parseNum(TypeThinPool, "data block size", f[2])
	if err != nil {
		return ThinPool{}, err
	}
	lwm, err := parseNum(TypeThinPool, "low water mark", f[3])
	if err != nil {
		return ThinPool{}, err
	}
	p.DataBlockSize, p.LowWaterMark = Sectors(bs), DataBlocks(lwm)
	if err := p.parseFeatures(f[4:]); err != nil {
		return ThinPool{}, err
	}
	return p, p.Validate()
}

// parseFeatures reads "<n> <feature>...". No args at all is valid, as is a
// repeated feature; names match case-insensitively, as in the kernel.
func (p *ThinPool) parseFeatures(args []string) error {
	if len(args) == 0 {
		return nil
	}
	n, err := parseNum(TypeThinPool, "feature count", args[0])
	if err != nil {
		return err
	}
	if n > maxPoolFeatures || n != uint64(len(args)-1) {
		return badField(TypeThinPool, "feature count", args[0],
			fmt.Errorf("%d feature args follow, kernel accepts at most %d", len(args)-1, maxPoolFeatures))
	}
	flags := p.flags()
	for _, a := range args[1:] {
		i := indexFold(poolFeatureNames[:], a)
		if i < 0 {
			return badField(TypeThinPool, "feature", a, errors.New("unknown"))
		}
		*flags[i] = true
	}
	return nil
}

// Thin is the thin target: DeviceID inside the pool PoolDev, optionally
// reading unprovisioned blocks from the read-only ExternalOrigin.
type Thin struct {
	PoolDev        string
	DeviceID       ThinID
	ExternalOrigin string
}

// TargetType returns "thin".
func (Thin) TargetType() string { return TypeThin }

// Params renders "<pool dev> <dev id> [<external origin dev>]".
func (t Thin) Params() string {
	s := t.PoolDev + " " + fmtNum(t.DeviceID)
	if t.ExternalOrigin != "" {
		s += " " + t.ExternalOrigin
	}
	return s
}

// Validate checks what the kernel's thin constructor would reject.
func (t Thin) Validate() error {
	if err := checkDev(TypeThin, "pool device", t.PoolDev); err != nil {
		return err
	}
	if err := t.DeviceID.Check(); err != nil {
		return badField(TypeThin, "device id", fmtNum(t.DeviceID), err)
	}
	if t.ExternalOrigin == "" {
		return nil
	}
	if t.ExternalOrigin == t.PoolDev {
		return badField(TypeThin, "external origin", t.ExternalOrigin, errors.New("same as pool device"))
	}
	return checkDev(TypeThin, "external origin", t.ExternalOrigin)
}

// ParseThin parses thin params: <pool dev> <dev id> [<external origin dev>].
func ParseThin(params string) (Thin, error) {
	f := strings.Fields(params)
	if len(f) != 2 && len(f) != 3 {
		return Thin{}, badField(TypeThin, "params", params, errors.New("want 2 or 3 fields"))
	}
	id, err := parseNum(TypeThin, "device id", f[1])
	if err != nil {
		return Thin{}, err
	}
	tid, err := ThinIDOf(id)
	if err != nil {
		return Thin{}, badField(TypeThin, "device id", f[1], err)
	}
	t := Thin{PoolDev: f[0], DeviceID: tid}
	if len(f) == 3 {
		t.ExternalOrigin = f[2]
	}
	return t, t.Validate()
}

// Linear maps onto Device starting at sector Offset.
type Linear struct {
	Device string
	Offset Sectors
}

// TargetType returns "linear".
func (Linear) TargetType() string { return TypeLinear }

// Params renders "<dev> <offset>".
func (l Linear) Params() string { return l.Device + " " + fmtNum(l.Offset) }

// Validate checks the device is usable in a table.
func (l Linear) Validate() error { return checkDev(TypeLinear, "device", l.Device) }

// ParseLinear parses linear params: <dev> <offset>.
func ParseLinear(params string) (Linear, error) {
	f := strings.Fields(params)
	if len(f) != 2 {
		return Linear{}, badField(TypeLinear, "params", params, errors.New("want 2 fields"))
	}
	off, err := parseNum(TypeLinear, "offset", f[1])
	if err != nil {
		return Linear{}, err
	}
	l := Linear{Device: f[0], Offset: Sectors(off)}
	return l, l.Validate()
}

// ErrorTarget fails every I/O; it takes no params.
type ErrorTarget struct{}

// TargetType returns "error".
func (ErrorTarget) TargetType() string { return TypeError }

// Params returns "".
func (ErrorTarget) Params() string { return "" }

// checkDev rejects device names that would not survive the kernel's
// whitespace split of the params.
func checkDev(what, field, dev string) error {
	if dev == "" || strings.IndexFunc(dev, unicode.IsSpace) >= 0 {
		return badField(what, field, dev, errors.New("empty or contains whitespace"))
	}
	return nil
}

// indexFold finds s in names ignoring ASCII case only, like the kernel's
// strcasecmp (strings.EqualFold would also take e.g. the Kelvin sign).
func indexFold(names []string, s string) int {
	for i, n := range names {
		if len(n) == len(s) && asciiLower(n) == asciiLower(s) {
			return i
		}
	}
	return -1
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func fmtNum[T ~uint32 | ~uint64](n T) string { return strconv.FormatUint(uint64(n), 10) }

// parseNum parses a decimal field; the error names the field and the
// strconv reason (strconv.ErrSyntax or ErrRange).
func parseNum(what, field, val string) (uint64, error) {
	n, err := strconv.ParseUint(val, 10, 64)
	if err != nil {
		if ne, ok := errors.AsType[*strconv.NumError](err); ok {
			err = ne.Err
		}
		return 0, badField(what, field, val, err)
	}
	return n, nil
}

// badField reports field of what (a target or status kind) holding val,
// wrapping both ErrInvalid and the reason.
func badField(what, field, val string, why error) error {
	return fmt.Errorf("%s: %s %q: %w: %w", what, field, val, ErrInvalid, why)
}
