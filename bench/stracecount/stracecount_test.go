package stracecount

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

const short = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 56.44    0.524658        1165       450        40 futex
  1.08    0.010000         158        63        10 ioctl
  0.00    0.000000           0        20           fsync
------ ----------- ----------- --------- --------- ------------------
100.00    0.929619         160      5799       180 total
`

const long = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 56.44    0.524658        1165       650        40 futex
  1.08    0.010000         158       163        10 ioctl
  0.00    0.000000           0        20           fsync
  0.00    0.000000           0        10           mount
100.00    0.929619         160      5799       180 total
`

func TestParseAndDiff(t *testing.T) {
	s, err := Parse(strings.NewReader(short))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counts{"futex": 450, "ioctl": 63, "fsync": 20}); !reflect.DeepEqual(s, want) {
		t.Fatalf("Parse = %v, want %v", s, want)
	}
	l, err := Parse(strings.NewReader(long))
	if err != nil {
		t.Fatal(err)
	}
	got := Diff(s, l, 10)
	want := []PerOp{{"futex", 20}, {"ioctl", 10}, {"mount", 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
	if tot := Total(got); math.Abs(tot-31) > 1e-9 {
		t.Errorf("Total = %v", tot)
	}
	if d := Diff(s, l, 0); d != nil {
		t.Errorf("Diff with n=0 = %v", d)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		" 1.0 0.1 10 many 2 futex\n",
		" 1.0 0.1 10 -3 2 futex\n",
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(short)
	f.Add(long)
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for name, n := range c {
			if n < 0 || name == "total" {
				t.Fatalf("bad count %s=%d", name, n)
			}
		}
	})
}
