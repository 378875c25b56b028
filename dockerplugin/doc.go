// Package dockerplugin serves a graphdriver.Driver to Docker Engine as a
// legacy graphdriver plugin: HTTP/1.1 with JSON bodies on a unix socket,
// the protocol of Moby's daemon/graphdriver/proxy.go (the client side),
// which Docker 20.10–27 load with --experimental. Docker 28 removed
// graphdriver plugins.
//
// The handler is the wire format and nothing else; Serve adds the socket
// (removing a stale one) and a clean shutdown. Docker calls
// /GraphDriver.Init once per daemon start, with Home = <data-root>/<plugin
// name>; Config.Home overrides it so a plugin can keep serving the
// /var/lib/docker/devicemapper home Docker's own driver left.
package dockerplugin
