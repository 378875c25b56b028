package devmapper

import (
	"errors"
	"strconv"
	"testing"
)

func TestThinPoolStatusParse(t *testing.T) {
	tests := []struct {
		in   string
		want ThinPoolStatus
	}{
		// Linux 6.1 prints a trailing space after the watermark.
		{"0 10/1024 0/1638 - rw discard_passdown queue_if_no_space - 1024 ", ThinPoolStatus{
			UsedMetaBlocks: 10, TotalMetaBlocks: 1024, TotalDataBlocks: 1638,
			MetadataLowWatermark: 1024, HasMetadataLowWatermark: true}},
		{"42 300/4096 1638/1638 17 out_of_data_space no_discard_passdown error_if_no_space needs_check 1024", ThinPoolStatus{
			Mode: PoolModeOutOfDataSpace, TransactionID: 42, UsedMetaBlocks: 300, TotalMetaBlocks: 4096,
			UsedDataBlocks: 1638, TotalDataBlocks: 1638, HeldMetadataRoot: 17, HasHeldMetadataRoot: true,
			Discard: NoDiscardPassdown, ErrorIfNoSpace: true, NeedsCheck: true,
			MetadataLowWatermark: 1024, HasMetadataLowWatermark: true}},
		// Older kernel: no watermark.
		{"1 2/3 4/5 - ro ignore_discard queue_if_no_space -", ThinPoolStatus{
			Mode: PoolModeReadOnly, TransactionID: 1, UsedMetaBlocks: 2, TotalMetaBlocks: 3,
			UsedDataBlocks: 4, TotalDataBlocks: 5, Discard: IgnoreDiscard}},
		// A future kernel's extra fields are ignored.
		{"1 2/3 4/5 - rw discard_passdown queue_if_no_space - 6 new_thing 7", ThinPoolStatus{
			TransactionID: 1, UsedMetaBlocks: 2, TotalMetaBlocks: 3, UsedDataBlocks: 4, TotalDataBlocks: 5,
			MetadataLowWatermark: 6, HasMetadataLowWatermark: true}},
		{"Fail", ThinPoolStatus{Mode: PoolModeFail}},
		{" Fail \n", ThinPoolStatus{Mode: PoolModeFail}},
	}
	for _, tt := range tests {
		got, err := ParseThinPoolStatus(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseThinPoolStatus(%q) =\n %+v, %v; want\n %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestThinPoolStatusInvalid(t *testing.T) {
	const ok = "0 10/1024 0/1638 - rw discard_passdown queue_if_no_space - 1024"
	invalid := []string{
		"", "   ", "fail", "0 10/1024 0/1638 - rw discard_passdown queue_if_no_space",
		"x 10/1024 0/1638 - rw discard_passdown queue_if_no_space - 1024",
		"0 10 0/1638 - rw discard_passdown queue_if_no_space - 1024",
		"0 10/1024/5 0/1638 - rw discard_passdown queue_if_no_space - 1024",
		"0 10/ 0/1638 - rw discard_passdown queue_if_no_space - 1024",
		"0 10/1024 0/-1 - rw discard_passdown queue_if_no_space - 1024",
		"0 10/1024 0/1638 none rw discard_passdown queue_if_no_space - 1024",
		"0 10/1024 0/1638 - Fail discard_passdown queue_if_no_space - 1024",
		"0 10/1024 0/1638 - RW discard_passdown queue_if_no_space - 1024",
		"0 10/1024 0/1638 - rw discard queue_if_no_space - 1024",
		"0 10/1024 0/1638 - rw discard_passdown if_no_space - 1024",
		"0 10/1024 0/1638 - rw discard_passdown queue_if_no_space yes 1024",
		"0 10/1024 0/1638 - rw discard_passdown queue_if_no_space - -",
		"18446744073709551616 10/1024 0/1638 - rw discard_passdown queue_if_no_space - 1024",
	}
	for _, in := range invalid {
		if got, err := ParseThinPoolStatus(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseThinPoolStatus(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
	if _, err := ParseThinPoolStatus(ok); err != nil {
		t.Fatalf("control case: %v", err)
	}
	if got, err := ParseThinPoolStatus("Error"); !errors.Is(err, ErrStatusError) || got != (ThinPoolStatus{}) {
		t.Errorf(`ParseThinPoolStatus("Error") = %+v, %v; want ErrStatusError`, got, err)
	}
}

func TestThinPoolStatusErrorNamesField(t *testing.T) {
	_, err := ParseThinPoolStatus("0 10/1024 0/1x38 - rw discard_passdown queue_if_no_space - 1024")
	want := `thin-pool status: total data blocks "1x38": invalid: invalid syntax`
	if err == nil || err.Error() != want || !errors.Is(err, strconv.ErrSyntax) {
		t.Errorf("err = %v; want %q wrapping strconv.ErrSyntax", err, want)
	}
}

func TestThinStatusParse(t *testing.T) {
	tests := []struct {
		in   string
		want ThinStatus
	}{
		{"0 -", ThinStatus{}},
		{"2048 2047", ThinStatus{MappedSectors: 2048, HighestMappedSector: 2047, HasHighest: true}},
		{"2048 4095 future", ThinStatus{MappedSectors: 2048, HighestMappedSector: 4095, HasHighest: true}},
		{"Fail", ThinStatus{Fail: true}},
		{"-", ThinStatus{Inactive: true}},
		{" - \n", ThinStatus{Inactive: true}},
	}
	for _, tt := range tests {
		got, err := ParseThinStatus(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseThinStatus(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "0", "x -", "0 x", "-1 -", "0 +1", "0 18446744073709551616"} {
		if got, err := ParseThinStatus(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseThinStatus(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
	if _, err := ParseThinStatus("Error"); !errors.Is(err, ErrStatusError) {
		t.Errorf(`ParseThinStatus("Error") = %v; want ErrStatusError`, err)
	}
}

func TestStatusModeStrings(t *testing.T) {
	for m, want := range map[PoolMode]string{
		PoolModeReadWrite: "rw", PoolModeReadOnly: "ro", PoolModeOutOfDataSpace: "out_of_data_space",
		PoolModeFail: "Fail", PoolMode(9): "PoolMode(9)",
	} {
		if got := m.String(); got != want {
			t.Errorf("PoolMode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
	if got := IgnoreDiscard.String(); got != "ignore_discard" {
		t.Errorf("IgnoreDiscard.String() = %q", got)
	}
}

func FuzzParseThinPoolStatus(f *testing.F) {
	for _, s := range []string{
		"0 10/1024 0/1638 - rw discard_passdown queue_if_no_space - 1024 ",
		"42 300/4096 1638/1638 17 out_of_data_space no_discard_passdown error_if_no_space needs_check 1024",
		"1 2/3 4/5 - ro ignore_discard queue_if_no_space -", "Fail", "Error",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseThinPoolStatus(s)
		if err != nil {
			if st != (ThinPoolStatus{}) {
				t.Fatalf("ParseThinPoolStatus(%q) returned %+v with error %v", s, st, err)
			}
			return
		}
		if st.Mode == PoolModeFail && st != (ThinPoolStatus{Mode: PoolModeFail}) {
			t.Fatalf("Fail status with other fields set: %+v", st)
		}
		if st.Mode < PoolModeReadWrite || st.Mode > PoolModeFail || st.Discard < DiscardPassdown || st.Discard > IgnoreDiscard {
			t.Fatalf("enum out of range: %+v", st)
		}
	})
}

func FuzzParseThinStatus(f *testing.F) {
	for _, s := range []string{"0 -", "2048 2047", "Fail", "-", "Error"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseThinStatus(s)
		if err != nil {
			if st != (ThinStatus{}) {
				t.Fatalf("ParseThinStatus(%q) returned %+v with error %v", s, st, err)
			}
			return
		}
		if (st.Fail || st.Inactive) && st != (ThinStatus{Fail: st.Fail, Inactive: st.Inactive}) {
			t.Fatalf("Fail/Inactive status with other fields set: %+v", st)
		}
		if st.Fail && st.Inactive {
			t.Fatalf("both Fail and Inactive: %+v", st)
		}
	})
}
