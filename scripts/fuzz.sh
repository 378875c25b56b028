#!/bin/sh
# Runs every fuzz target of the module for a bounded time each (default 10s).
# Fuzzing runs on the host: the targets are pure parsers and tar handling.
set -eu
t=${1:-10s}
export THINLAYER_NO_UML=1
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $f ($t)"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"
	done
done
