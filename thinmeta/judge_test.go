package thinmeta_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/thinmeta"
)

// The independent judges: thin-provisioning-tools' thin_dump, thin_ls and
// thin_check, run on a block device (they open with O_DIRECT, which tmpfs
// files refuse).

type dumpXML struct {
	Time          uint32      `xml:"time,attr"`
	Transaction   uint64      `xml:"transaction,attr"`
	Version       uint32      `xml:"version,attr"`
	DataBlockSize uint32      `xml:"data_block_size,attr"`
	NrDataBlocks  uint64      `xml:"nr_data_blocks,attr"`
	Devices       []dumpedDev `xml:"device"`
}

type dumpedDev struct {
	ID           devmapper.ThinID `xml:"dev_id,attr"`
	MappedBlocks uint64           `xml:"mapped_blocks,attr"`
	Transaction  uint64           `xml:"transaction,attr"`
	CreationTime uint32           `xml:"creation_time,attr"`
	SnapTime     uint32           `xml:"snap_time,attr"`
	Ranges       []struct {
		Origin uint64 `xml:"origin_begin,attr"`
		Data   uint64 `xml:"data_begin,attr"`
		Length uint64 `xml:"length,attr"`
		Time   uint32 `xml:"time,attr"`
	} `xml:"range_mapping"`
	Singles []struct {
		Origin uint64 `xml:"origin_block,attr"`
		Data   uint64 `xml:"data_block,attr"`
		Time   uint32 `xml:"time,attr"`
	} `xml:"single_mapping"`
}

// dumpRange is a run of mappings as thin_dump prints them; a single
// mapping is a run of one.
type dumpRange struct {
	origin, data, length uint64
	time                 uint32
}

// runs returns the device's mappings as runs in order of virtual block.
func (d dumpedDev) runs() []dumpRange {
	rs := make([]dumpRange, 0, len(d.Ranges)+len(d.Singles))
	for _, r := range d.Ranges {
		rs = append(rs, dumpRange{r.Origin, r.Data, r.Length, r.Time})
	}
	for _, s := range d.Singles {
		rs = append(rs, dumpRange{s.Origin, s.Data, 1, s.Time})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].origin < rs[j].origin })
	return rs
}

// mappingCursor steps through runs one mapping at a time, so comparing
// millions of mappings allocates nothing per mapping.
type mappingCursor struct {
	runs []dumpRange
	i    int    // current run
	off  uint64 // within it
}

func (c *mappingCursor) next() (thinmeta.Mapping, bool) {
	for c.i < len(c.runs) && c.off >= c.runs[c.i].length {
		c.i, c.off = c.i+1, 0
	}
	if c.i == len(c.runs) {
		return thinmeta.Mapping{}, false
	}
	r := c.runs[c.i]
	c.off++
	return thinmeta.Mapping{Virtual: r.origin + c.off - 1, Data: r.data + c.off - 1, Time: r.time}, true
}

func (c *mappingCursor) remaining() uint64 {
	var n uint64
	for i := c.i; i < len(c.runs); i++ {
		n += c.runs[i].length
	}
	return n - c.off
}

func runTool(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// thinDump runs thin_dump on dev; snap reads the held metadata snapshot.
func thinDump(t testing.TB, dev string, snap bool) dumpXML {
	t.Helper()
	args := []string{dev}
	if snap {
		args = []string{"-m", dev}
	}
	var d dumpXML
	if err := xml.Unmarshal(runTool(t, "thin_dump", args...), &d); err != nil {
		t.Fatalf("parse thin_dump output: %v", err)
	}
	return d
}

// lsRow is one line of thin_ls.
type lsRow struct {
	ID                         devmapper.ThinID
	Mapped, Exclusive, Shared  uint64
	Transaction                uint64
	CreationTime, SnapshotTime uint32
}

const lsFields = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME"

func thinLs(t testing.TB, dev string, snap bool) []lsRow {
	t.Helper()
	args := []string{"--no-headers", "-o", lsFields, dev}
	if snap {
		args = append([]string{"-m"}, args...)
	}
	out := runTool(t, "thin_ls", args...)
	rows, err := parseLs(out)
	if err != nil {
		t.Fatalf("thin_ls output: %v\n%s", err, out)
	}
	return rows
}

func parseLs(out []byte) ([]lsRow, error) {
	var rows []lsRow
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 7 {
			return nil, fmt.Errorf("line %q: want 7 fields", line)
		}
		var n [7]uint64
		for i, s := range f {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %q: %v", line, err)
			}
			n[i] = v
		}
		rows = append(rows, lsRow{devmapper.ThinID(n[0]), n[1], n[2], n[3], n[4], uint32(n[5]), uint32(n[6])})
	}
	return rows, nil
}

// thinCheck runs thin_check and returns its combined output and whether it
// passed.
func thinCheck(dev string, args ...string) (string, bool) {
	out, err := exec.Command("thin_check", append(args, dev)...).CombinedOutput()
	return string(out), err == nil
}
