package devmapper

import (
	"errors"
	"strconv"
	"testing"
)

func TestTargetUnits(t *testing.T) {
	if got := Sectors(2048).Bytes(); got != 1<<20 {
		t.Errorf("Sectors(2048).Bytes() = %d", got)
	}
	if got := BytesToSectors(1023); got != 1 {
		t.Errorf("BytesToSectors(1023) = %d, want 1 (truncated)", got)
	}
	if got := DataBlocks(3).Sectors(128); got != 384 {
		t.Errorf("DataBlocks(3).Sectors(128) = %d", got)
	}
	if got := MetaBlocks(2).Bytes(); got != 8192 {
		t.Errorf("MetaBlocks(2).Bytes() = %d", got)
	}
	for s, want := range map[Sectors]string{
		0: "0 sectors (0 B)", 3: "3 sectors (1536 B)", 2048: "2048 sectors (1 MiB)", 1 << 31: "2147483648 sectors (1 TiB)",
	} {
		if got := s.String(); got != want {
			t.Errorf("Sectors(%d).String() = %q, want %q", uint64(s), got, want)
		}
	}
}

func TestTargetRender(t *testing.T) {
	tests := []struct {
		t    Target
		want string
	}{
		{ThinPool{MetadataDev: "7:1", DataDev: "7:0", DataBlockSize: 128, LowWaterMark: 32768, SkipBlockZeroing: true},
			"7:1 7:0 128 32768 1 skip_block_zeroing"},
		{ThinPool{MetadataDev: "/dev/loop1", DataDev: "/dev/loop0", DataBlockSize: 256}, "/dev/loop1 /dev/loop0 256 0 0"},
		{ThinPool{MetadataDev: "m", DataDev: "d", DataBlockSize: 128, ErrorIfNoSpace: true, ReadOnly: true, NoDiscardPassdown: true},
			"m d 128 0 3 no_discard_passdown read_only error_if_no_space"},
		{Thin{PoolDev: "253:0", DeviceID: 7}, "253:0 7"},
		{Thin{PoolDev: "253:0", DeviceID: MaxThinID, ExternalOrigin: "8:16"}, "253:0 16777215 8:16"},
		{Linear{Device: "/dev/sda", Offset: 2048}, "/dev/sda 2048"},
		{ErrorTarget{}, ""},
	}
	for _, tt := range tests {
		if got := tt.t.Params(); got != tt.want {
			t.Errorf("%#v.Params() = %q, want %q", tt.t, got, tt.want)
		}
		l := Line(0, 2048, tt.t)
		back, err := ParseTarget(l)
		if err != nil || back != tt.t {
			t.Errorf("ParseTarget(%q) = %#v, %v; want %#v", l, back, err, tt.t)
		}
	}
}

func TestTargetParseThinPool(t *testing.T) {
	valid := []struct {
		in   string
		want ThinPool
	}{
		// As the kernel prints it back: trailing space after the features.
		{"7:1 7:0 128 32768 1 skip_block_zeroing ", ThinPool{MetadataDev: "7:1", DataDev: "7:0", DataBlockSize: 128,
			LowWaterMark: 32768, SkipBlockZeroing: true}},
		{"7:1 7:0 2097152 0 0 ", ThinPool{MetadataDev: "7:1", DataDev: "7:0", DataBlockSize: MaxDataBlockSize}},
		{"a b 1024 5", ThinPool{MetadataDev: "a", DataDev: "b", DataBlockSize: 1024, LowWaterMark: 5}},
		{"a b 128 0 2 IGNORE_DISCARD ignore_discard", ThinPool{MetadataDev: "a", DataDev: "b", DataBlockSize: 128, IgnoreDiscard: true}},
		{"a b 128 0 4 skip_block_zeroing ignore_discard read_only error_if_no_space", ThinPool{MetadataDev: "a", DataDev: "b",
			DataBlockSize: 128, SkipBlockZeroing: true, IgnoreDiscard: true, ReadOnly: true, ErrorIfNoSpace: true}},
	}
	for _, tt := range valid {
		got, err := ParseThinPool(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseThinPool(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	invalid := []string{
		"", "a b 128", "a a 128 0", "a b 64 0", "a b 192 0", "a b 2097280 0", "a b 0 0", "a b x 0", "a b 128 -1",
		"a b 128 0 1", "a b 128 0 0 read_only", "a b 128 0 1 read_only extra", "a b 128 0 1 bogus", "a b 128 0 x",
		"a b 128 0 5 skip_block_zeroing ignore_discard no_discard_passdown read_only error_if_no_space",
		"a b 128 18446744073709551616", "a b 128 0 1 ſkip_block_zeroing",
	}
	for _, in := range invalid {
		if got, err := ParseThinPool(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseThinPool(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestTargetParseThinAndLinear(t *testing.T) {
	if got, err := ParseThin("253:0 16777215 8:16"); err != nil || got != (Thin{"253:0", MaxThinID, "8:16"}) {
		t.Errorf("ParseThin = %+v, %v", got, err)
	}
	if got, err := ParseLinear(" /dev/sda  2048 "); err != nil || got != (Linear{"/dev/sda", 2048}) {
		t.Errorf("ParseLinear = %+v, %v", got, err)
	}
	for _, in := range []string{"", "p", "p 16777216", "p -1", "p 1 p", "p 1 o x", "p 0x10"} {
		if got, err := ParseThin(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseThin(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
	for _, in := range []string{"", "d", "d 1 2", "d x", "d 1.5"} {
		if got, err := ParseLinear(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseLinear(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	ok := ThinPool{MetadataDev: "m", DataDev: "d", DataBlockSize: 128}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", ok, err)
	}
	bad := []func(*ThinPool){
		func(p *ThinPool) { p.MetadataDev = "" },
		func(p *ThinPool) { p.DataDev = "/dev/my disk" },
		func(p *ThinPool) { p.DataDev = p.MetadataDev },
		func(p *ThinPool) { p.DataBlockSize = 127 },
		func(p *ThinPool) { p.DataBlockSize = MaxDataBlockSize + MinDataBlockSize },
		func(p *ThinPool) {
			p.SkipBlockZeroing, p.IgnoreDiscard, p.NoDiscardPassdown, p.ReadOnly, p.ErrorIfNoSpace = true, true, true, true, true
		},
	}
	for i, mutate := range bad {
		p := ok
		mutate(&p)
		if err := p.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("case %d: Validate(%+v) = %v; want ErrInvalid", i, p, err)
		}
	}
	for _, th := range []Thin{{PoolDev: "p", DeviceID: MaxThinID + 1}, {PoolDev: "p", ExternalOrigin: "p"}, {}} {
		if err := th.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%+v) = %v; want ErrInvalid", th, err)
		}
	}
}

func TestTableLineParse(t *testing.T) {
	valid := []struct {
		in   string
		want TableLine
		str  string
	}{
		{"0 2097152 thin-pool 7:1 7:0 128 32768 1 skip_block_zeroing ",
			TableLine{0, 2097152, "thin-pool", "7:1 7:0 128 32768 1 skip_block_zeroing"},
			"0 2097152 thin-pool 7:1 7:0 128 32768 1 skip_block_zeroing"},
		{"  8\t16 error \n", TableLine{8, 16, "error", ""}, "8 16 error"},
		{"0 1 linear /dev/a\\ b  0", TableLine{0, 1, "linear", "/dev/a\\ b  0"}, "0 1 linear /dev/a\\ b  0"},
	}
	for _, tt := range valid {
		got, err := ParseTableLine(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseTableLine(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if s := got.String(); s != tt.str {
			t.Errorf("String() = %q, want %q", s, tt.str)
		}
	}
	invalid := []string{"", "0 1", "0 0 error", "x 1 error", "0 -1 error", "18446744073709551615 1 error", "0 1e3 linear"}
	for _, in := range invalid {
		if got, err := ParseTableLine(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseTableLine(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
	if _, err := ParseTarget(TableLine{Type: "striped", Params: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseTarget(striped) = %v; want ErrInvalid", err)
	}
	if tg, err := ParseTarget(TableLine{Type: "error", Params: "x"}); err == nil || tg != nil {
		t.Errorf("ParseTarget(error with params) = %v, %v; want nil target and error", tg, err)
	}
}

func TestTargetParseErrorNamesField(t *testing.T) {
	_, err := ParseThinPool("m d 128 lots")
	want := `thin-pool: low water mark "lots": invalid: invalid syntax`
	if err == nil || err.Error() != want || !errors.Is(err, strconv.ErrSyntax) {
		t.Errorf("err = %v; want %q wrapping strconv.ErrSyntax", err, want)
	}
}

func FuzzParseTableLine(f *testing.F) {
	for _, s := range []string{
		"0 2097152 thin-pool 7:1 7:0 128 32768 1 skip_block_zeroing ",
		"0 2097152 thin-pool /dev/loop1 /dev/loop0 65536 0 2 read_only error_if_no_space",
		"0 20971520 thin 253:2 7", "0 20971520 thin 253:2 7 8:16", "0 8 linear /dev/sda 2048", "0 8 error",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseTableLine(s)
		if err != nil {
			return
		}
		l2, err := ParseTableLine(l.String())
		if err != nil || l2 != l {
			t.Fatalf("ParseTableLine(%q) = %+v; reparse of %q = %+v, %v", s, l, l.String(), l2, err)
		}
		tg, err := ParseTarget(l)
		if err != nil {
			return
		}
		l3 := Line(l.Start, l.Length, tg)
		tg2, err := ParseTarget(l3)
		if err != nil || tg2 != tg {
			t.Fatalf("target %#v rendered %q reparsed as %#v, %v", tg, l3.Params, tg2, err)
		}
	})
}
