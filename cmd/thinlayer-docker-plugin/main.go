// Command thinlayer-docker-plugin serves thinlayer to Docker Engine 20.10–27
// as a graphdriver plugin: start it, then dockerd --experimental
// --storage-driver <name>. By default it serves the home Docker's own
// devicemapper driver left, so its images and containers stay usable.
// Docker 28 removed graphdriver plugins. See contrib/docker and the README.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/thinlayer/thinlayer/dockerplugin"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("thinlayer-docker-plugin", flag.ContinueOnError)
	name := fs.String("name", "thinlayer", "plugin name: dockerd's --storage-driver, and the socket's name")
	sockDir := fs.String("socket-dir", dockerplugin.DefaultSocketDir, "where dockerd looks for plugin sockets")
	home := fs.String("home", "/var/lib/docker/devicemapper", `home to serve whatever Docker asks; "" serves Docker's <data-root>/<name>`)
	level := fs.String("log-level", "info", "debug, info, warn or error")
	var opts listFlag
	fs.Var(&opts, "storage-opt", "a dm.* option (repeatable); dockerd's own --storage-opt are added after these")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	lv, err := logrus.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "thinlayer-docker-plugin:", err)
		return 2
	}
	logrus.SetLevel(lv)
	log := logrus.WithField("plugin", *name)

	l, err := dockerplugin.Listen(filepath.Join(*sockDir, *name+".sock"))
	if err != nil {
		log.WithError(err).Error("thinlayer-docker-plugin: cannot serve")
		return 1
	}
	h := dockerplugin.NewHandler(dockerplugin.Config{Home: *home, Options: opts, Logger: log})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.WithField("socket", l.Addr().String()).Info("thinlayer-docker-plugin: serving")
	if err := dockerplugin.Serve(ctx, l, h); err != nil {
		log.WithError(err).Error("thinlayer-docker-plugin: stopped with an error")
		return 1
	}
	log.Info("thinlayer-docker-plugin: stopped")
	return 0
}
