package compat_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/docker/docker/daemon/graphdriver/graphtest"
	"github.com/docker/docker/pkg/idtools"
	"github.com/docker/docker/pkg/plugingetter"
	"github.com/docker/docker/pkg/plugins"
	"github.com/thinlayer/thinlayer/compat/mobyhome"
	"github.com/thinlayer/thinlayer/dockerplugin"
	"github.com/thinlayer/thinlayer/testutil"
)

// viaPlugin is a driver name Moby's graphtest can open: Moby's own plugin
// client (daemon/graphdriver/proxy.go, what dockerd runs for
// --storage-driver <plugin>) talking to thinlayer's dockerplugin on a unix
// socket, so the suite checks the wire format end to end.
const viaPlugin = "thinlayer-via-plugin"

func init() { graphdriver.Register(viaPlugin, initViaPlugin) }

func initViaPlugin(home string, options []string, _ idtools.IdentityMapping) (graphdriver.Driver, error) {
	root := filepath.Dir(home)
	l, err := dockerplugin.Listen(filepath.Join(root, "thinlayer.sock"))
	if err != nil {
		return nil, err
	}
	go http.Serve(l, dockerplugin.NewHandler(dockerplugin.Config{})) // ends with the test process
	client, err := plugins.NewClient("unix://"+l.Addr().String(), nil)
	if err != nil {
		return nil, err
	}
	pg := v1Getter{v1Plugin{"thinlayer", client}}
	return graphdriver.New("thinlayer", pg, graphdriver.Options{
		Root: root, DriverOptions: mobyhome.Options(options...), ExperimentalEnabled: true,
	})
}

// v1Plugin and v1Getter stand for dockerd's plugin registry: a legacy
// plugin found as a socket in /run/docker/plugins.
type v1Plugin struct {
	name   string
	client *plugins.Client
}

func (p v1Plugin) Name() string               { return p.name }
func (p v1Plugin) ScopedPath(s string) string { return s }
func (p v1Plugin) IsV1() bool                 { return true }
func (p v1Plugin) Client() *plugins.Client    { return p.client }

type v1Getter struct{ p v1Plugin }

func (g v1Getter) Get(name, capability string, _ int) (plugingetter.CompatPlugin, error) {
	if name != g.p.name || capability != "GraphDriver" {
		return nil, errors.New("no such plugin")
	}
	return g.p, nil
}
func (g v1Getter) GetAllByCap(string) ([]plugingetter.CompatPlugin, error) { return nil, nil }
func (g v1Getter) GetAllManagedPluginsByCap(string) []plugingetter.CompatPlugin {
	return nil
}
func (g v1Getter) Handle(string, func(string, *plugins.Client)) {}

// TestGraphtestThroughPlugin runs Moby v24's graphdriver suite on thinlayer
// served as a Docker graphdriver plugin, through Moby's plugin client.
func TestGraphtestThroughPlugin(t *testing.T) {
	testutil.RequireKernel(t)
	for _, c := range []struct {
		name string
		f    func(testing.TB, string, ...string)
	}{
		{"CreateEmpty", graphtest.DriverTestCreateEmpty},
		{"CreateBase", graphtest.DriverTestCreateBase},
		{"CreateSnap", graphtest.DriverTestCreateSnap},
		{"Changes", graphtest.DriverTestChanges},
	} {
		t.Run(c.name, func(t *testing.T) { c.f(t, viaPlugin) })
	}
	t.Run("DeepLayerRead", func(t *testing.T) { graphtest.DriverTestDeepLayerRead(t, 10, viaPlugin) })
	t.Run("DiffApply", func(t *testing.T) { graphtest.DriverTestDiffApply(t, 100, viaPlugin) })
}
