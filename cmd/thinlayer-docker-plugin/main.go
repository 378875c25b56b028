// Command thinlayer-docker-plugin serves thinlayer to Docker Engine 20.10–27
// as a graphdriver plugin: start it, then dockerd --experimental
// --storage-driver thinlayer. By default it serves the home Docker's own
// devicemapper driver left (/var/lib/docker/devicemapper), so its layers
// stay usable. Docker 28 removed graphdriver plugins. `-h` lists the flags.
package main

import (
	"os"

	"github.com/thinlayer/thinlayer/dockerplugin"
)

func main() { os.Exit(dockerplugin.Main(os.Args[1:], os.Stderr)) }
