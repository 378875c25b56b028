package deviceset

import (
	"github.com/sirupsen/logrus"

	"github.com/thinlayer/thinlayer/dmopts"
	"github.com/thinlayer/thinlayer/lvmpool"
)

// The dm.* options live in package dmopts; these names keep one import
// enough for callers that open a home.
type (
	// Config is dmopts.Config.
	Config = dmopts.Config
	// DirectLVMConfig is dmopts.DirectLVMConfig.
	DirectLVMConfig = dmopts.DirectLVMConfig
)

// ParseOptions is dmopts.ParseOptions.
func ParseOptions(options []string) (Config, error) { return dmopts.ParseOptions(options) }

// DefaultConfig is dmopts.DefaultConfig: Moby v24.0.9's defaults.
func DefaultConfig() Config { return dmopts.DefaultConfig() }

// maxDeviceSize bounds every layer size read back (a DevInfo).
const maxDeviceSize = dmopts.MaxDeviceSize

// loggerOf is the logger a Config asks for, or Moby's tag on logrus's own.
func loggerOf(c Config) logrus.FieldLogger {
	if c.Logger != nil {
		return c.Logger
	}
	return logrus.WithField("storage-driver", "devicemapper")
}

// setupDirectLVM runs direct-lvm mode's setup (package lvmpool) when the
// options ask for it and points the DeviceSet at the LVM pool; a read-only
// open only looks at what an earlier setup recorded.
func (ds *DeviceSet) setupDirectLVM() error {
	var pool string
	var err error
	if ds.ro {
		pool, err = lvmpool.SetUpBefore(ds.home, ds.cfg.DirectLVM)
	} else {
		pool, err = lvmpool.Setup(ds.home, ds.cfg.DirectLVM, ds.log)
	}
	if err != nil || pool == "" {
		return err
	}
	ds.cfg.ThinPoolDevice = pool
	ds.log.Debugf("Setting dm.thinpooldev to %q", pool)
	return nil
}
