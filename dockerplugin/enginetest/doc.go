// Package enginetest runs Docker Engine on thinlayer's graphdriver plugin
// in the test kernel: Debian's dockerd 20.10 with its containerd and runc,
// a plugin process serving a loop-backed home, and an image made by the
// test from a static busybox. It holds tests only.
package enginetest
