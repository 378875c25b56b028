package cli

import (
	"fmt"
	"io"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/graphdriver"
)

// StatusReport is the driver's Status rows and the pool's usage.
type StatusReport struct {
	Driver []StatusRow `json:"driver"`
	Pool   PoolUsage   `json:"pool"`
}

// StatusRow is one row of the driver's Status, as `docker info` shows it.
type StatusRow struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// PoolUsage is the pool's space and state, in bytes.
type PoolUsage struct {
	Name            string  `json:"name"`
	Mode            string  `json:"mode"` // rw, ro, out_of_data_space, Fail
	ReadOnlyTable   bool    `json:"read_only_table"`
	TransactionID   uint64  `json:"transaction_id"`
	BlockSize       uint64  `json:"block_size"`
	DataUsed        uint64  `json:"data_used"`
	DataTotal       uint64  `json:"data_total"`
	DataPercent     float64 `json:"data_percent"`
	MetadataUsed    uint64  `json:"metadata_used"`
	MetadataTotal   uint64  `json:"metadata_total"`
	MetadataPercent float64 `json:"metadata_percent"`
	NeedsCheck      bool    `json:"needs_check"`
}

// Status reports the home's driver status and pool usage.
// The home is left as found (look: Leave, not Shutdown, which would
// unmount and deactivate what an engine has up).
func (h Home) Status() (r *StatusReport, err error) {
	err = h.look(func(ds *deviceset.DeviceSet) error {
		s, err := ds.Status()
		if err != nil {
			return fmt.Errorf("status of home %s: %w", h.dir(), err)
		}
		ro, err := poolTableReadOnly(ds)
		if err != nil {
			return err
		}
		r = &StatusReport{Driver: statusRows(s), Pool: poolUsage(s, ro)}
		return nil
	})
	return r, err
}

func poolTableReadOnly(ds *deviceset.DeviceSet) (bool, error) {
	ctl, err := dm.Open()
	if err != nil {
		return false, err
	}
	defer ctl.Close()
	return poolIsReadOnly(ctl, ds.PoolName())
}

func poolUsage(s deviceset.Status, readOnlyTable bool) PoolUsage {
	return PoolUsage{
		Name:            s.PoolName,
		Mode:            s.Pool.Mode.String(),
		ReadOnlyTable:   readOnlyTable,
		TransactionID:   s.Pool.TransactionID,
		BlockSize:       s.PoolBlockSize,
		DataUsed:        s.Data.Used,
		DataTotal:       s.Data.Total,
		DataPercent:     percent(s.Data.Used, s.Data.Total),
		MetadataUsed:    s.Metadata.Used,
		MetadataTotal:   s.Metadata.Total,
		MetadataPercent: percent(s.Metadata.Used, s.Metadata.Total),
		NeedsCheck:      s.Pool.NeedsCheck,
	}
}

// statusRows are graphdriver's Status rows.
func statusRows(s deviceset.Status) []StatusRow {
	var rows []StatusRow
	for _, r := range graphdriver.StatusRows(s) {
		rows = append(rows, StatusRow{r[0], r[1]})
	}
	return rows
}

// Print writes the report as people read it.
func (r *StatusReport) Print(w io.Writer) error {
	rows := make([][2]string, len(r.Driver))
	for i, row := range r.Driver {
		rows[i] = [2]string{row.Key, row.Value}
	}
	if err := keyValues(w, rows); err != nil {
		return err
	}
	p := r.Pool
	mode := p.Mode
	if p.ReadOnlyTable {
		mode += " (brought up read-only by this look)"
	}
	if p.NeedsCheck {
		mode += ", needs_check"
	}
	fmt.Fprintf(w, "\nPool %s: %s, transaction %d\n", p.Name, mode, p.TransactionID)
	return table(w, [][]string{
		{"SPACE", "USED", "TOTAL", "USE%"},
		{"data", human(p.DataUsed), human(p.DataTotal), fmt.Sprintf("%.1f%%", p.DataPercent)},
		{"metadata", human(p.MetadataUsed), human(p.MetadataTotal), fmt.Sprintf("%.1f%%", p.MetadataPercent)},
	})
}
