package dockerplugin

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/thinlayer/thinlayer/internal/buildinfo"
)

// DefaultHome is the home Docker's own devicemapper driver left: served by
// default, so its layers stay usable.
const DefaultHome = "/var/lib/docker/devicemapper"

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// Main is the thinlayer-docker-plugin command: it serves until SIGTERM or
// SIGINT and returns the exit status.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("thinlayer-docker-plugin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "thinlayer", "plugin name: dockerd's --storage-driver, and the socket's name")
	sockDir := fs.String("socket-dir", DefaultSocketDir, "where dockerd looks for plugin sockets")
	home := fs.String("home", DefaultHome, `home to serve whatever Docker asks; "" serves Docker's <data-root>/<name>`)
	level := fs.String("log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	var opts listFlag
	fs.Var(&opts, "storage-opt", "a dm.* option (repeatable); dockerd's own --storage-opt come after these")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(os.Stdout, buildinfo.Read())
		return 0
	}
	lv, err := logrus.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(stderr, "thinlayer-docker-plugin:", err)
		return 2
	}
	// Nanosecond timestamps, as dockerd's: a request's lines can be set
	// against dockerd's log and against each other.
	format := &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano}
	logger := logrus.New()
	logger.SetOutput(stderr)
	logger.SetLevel(lv)
	logger.SetFormatter(format)
	logrus.SetOutput(stderr) // the library's own lines
	logrus.SetLevel(lv)
	logrus.SetFormatter(format)
	log := logger.WithField("plugin", *name)

	l, err := Listen(filepath.Join(*sockDir, *name+".sock"))
	if err != nil {
		log.WithError(err).Error("thinlayer-docker-plugin: cannot serve")
		return 1
	}
	h := NewHandler(Config{Home: *home, Options: opts, Logger: log})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.WithFields(logrus.Fields{"socket": l.Addr().String(), "version": buildinfo.Read().String()}).Info("thinlayer-docker-plugin: serving")
	if err := Serve(ctx, l, h); err != nil {
		log.WithError(err).Error("thinlayer-docker-plugin: stopped with an error")
		return 1
	}
	log.Info("thinlayer-docker-plugin: stopped")
	return 0
}
