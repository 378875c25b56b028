package graphdriver_test

import (
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

// TestOpenLogsToItsLogger: what the driver and its DeviceSet log goes to
// the logger given to Open, with its fields, not to logrus's global one.
func TestOpenLogsToItsLogger(t *testing.T) {
	testutil.RequireKernel(t)
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	global := test.NewGlobal()
	d, err := gd.Open(t.TempDir(), testOptions("ext4"), gd.IdentityMapping{}, logger.WithField("engine", "test"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup()
	mustCreate(t, d, "a", "")
	get(t, d, "a")
	put(t, d, "a")
	if len(hook.AllEntries()) == 0 {
		t.Fatal("nothing was logged to the driver's logger")
	}
	for _, e := range hook.AllEntries() {
		if e.Data["engine"] != "test" {
			t.Errorf("line %q lacks the logger's fields: %v", e.Message, e.Data)
		}
	}
	for _, e := range global.AllEntries() {
		t.Errorf("logged to logrus's global logger: %q %v", e.Message, e.Data)
	}
}
