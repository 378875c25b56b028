#!/bin/sh
# Runs every fuzz target of the module for a bounded time each (default 10s).
# Fuzzing runs on the host: the targets are pure parsers and tar handling
# (the compat one applies tars as root with Moby's chroot, no device-mapper).
set -eu
t=${1:-10s}
export THINLAYER_NO_UML=1
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $f ($t)"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"
	done
done
# The differential test of layer apply against Moby's, in the compat module
# (cgo): the same tars applied by both must give the same trees.
echo "fuzz: compat FuzzApplyMatchesMoby ($t)"
(cd compat && go test -run '^$' -fuzz '^FuzzApplyMatchesMoby$' -fuzztime "$t" .)
