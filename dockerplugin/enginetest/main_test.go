package enginetest

import (
	"os"
	"testing"

	"github.com/thinlayer/thinlayer/dockerplugin"
	"github.com/thinlayer/thinlayer/testutil"
)

// envAsPlugin makes the test binary the thinlayer-docker-plugin command,
// so the test runs the shipped command's code as its own process.
const envAsPlugin = "THINLAYER_TEST_AS_DOCKER_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(envAsPlugin) == "1" {
		os.Exit(dockerplugin.Main(os.Args[1:], os.Stderr))
	}
	testutil.Main(m)
}
