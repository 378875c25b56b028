// Command thinlayer-snapshotter serves a thinlayer snapshotter over
// containerd's snapshots gRPC API on a unix socket, for containerd's
// [proxy_plugins] (see docs/containerd.md).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"google.golang.org/grpc"

	"github.com/thinlayer/thinlayer/containerd/adapter"
	"github.com/thinlayer/thinlayer/snapshotter"
)

type options []string

func (o *options) String() string     { return strings.Join(*o, ",") }
func (o *options) Set(v string) error { *o = append(*o, v); return nil }

func main() {
	var opts options
	home := flag.String("home", "/var/lib/thinlayer-snapshotter", "home of the DeviceSet and the snapshot database")
	socket := flag.String("address", "/run/thinlayer-snapshotter.sock", "unix socket to serve on")
	flag.Var(&opts, "storage-opt", "a dm.* option (repeatable)")
	flag.Parse()
	if err := serve(*home, *socket, opts); err != nil {
		fmt.Fprintln(os.Stderr, "thinlayer-snapshotter:", err)
		os.Exit(1)
	}
}

func serve(home, socket string, opts []string) error {
	s, err := snapshotter.OpenHome(home, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(adapter.Snapshotter{S: s}))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; srv.GracefulStop() }()
	return srv.Serve(l)
}
