#!/usr/bin/env bash
# Profiles one benchmark scenario of the bench module on one driver, in the
# test harness's kernel: a CPU profile and an execution trace (go test
# -cpuprofile/-trace, taken in the guest), printed as `go tool pprof -top`
# of the CPU profile and of the time spent blocked in syscalls, by stack.
#
#   scripts/bench-profile.sh CreateRemove [thinlayer|moby] [NoUdev|Udev] [benchtime]
#
# With STRACE=1 it also counts syscalls per operation: strace -c -f runs
# around a 1-iteration and an N-iteration run; the difference divided by N
# leaves out the home's setup. Output goes to bench/out/prof.
set -euo pipefail
cd "$(dirname "$0")/../bench"
scenario=${1:?scenario, e.g. CreateRemove}
driver=${2:-thinlayer}
cond=${3:-NoUdev}
bt=${4:-20x}
out=out/prof
mkdir -p "$out"
export THINLAYER_REQUIRE_KERNEL=1
go test -c -o "$out/bench.test" .
name=$cond-$scenario-$driver
pattern="^Benchmark$cond\$/^$scenario\$/^driver=$driver\$"
# Two runs: the tracer's own clock reads (a syscall each in UML, which has
# no vDSO) would swamp a CPU profile taken with it.
for prof in cpuprofile trace; do
	file=$out/$name.cpu.pprof
	[ "$prof" = trace ] && file=$out/$name.trace
	"$out/bench.test" -test.run '^$' -test.bench "$pattern" -test.benchtime "$bt" -test.timeout 60m \
		"-test.$prof" "$file" | grep --line-buffered '^Benchmark'
done
echo "== CPU profile ($name)"
go tool pprof -top -nodecount=25 "$out/bench.test" "$out/$name.cpu.pprof" 2>/dev/null | sed -n '1,32p'
echo "== time blocked in syscalls, by stack ($name)"
go tool trace -pprof=syscall "$out/$name.trace" >"$out/$name.syscall.pprof"
go tool pprof -top -cum -nodecount=40 -focus="bench_test.bench${scenario%%[0-9]*}" "$out/bench.test" "$out/$name.syscall.pprof" 2>/dev/null |
	grep -v ' testing\.\|runScenarios' | sed -n '1,45p'
if [ "${STRACE:-}" = 1 ]; then
	n=${bt%x}
	for iters in 1 "$n"; do
		BENCH_STRACE="$PWD/$out/$name.strace-$iters.txt" "$out/bench.test" -test.run '^$' \
			-test.bench "$pattern" -test.benchtime "${iters}x" -test.timeout 60m >/dev/null
	done
	echo "== syscalls per operation ($name, strace -c -f, ($n+1 iterations - 1 iteration) / $n)"
	go run ./cmd/stracediff -n "$n" "$out/$name.strace-1.txt" "$out/$name.strace-$n.txt"
fi
