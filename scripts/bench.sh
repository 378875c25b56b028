#!/usr/bin/env bash
# make bench: thinlayer side by side with Moby v24.0.9's devicemapper driver
# (the peer) and the floor, in the test harness's kernel (User-Mode Linux
# where the host has no dm-thin), without udev and with udevd running.
# Prints the tables of docs/benchmarks.md; the raw go test output is kept
# in $BENCH_OUT (bench/out by default).
#
# libdevmapper decides once per process whether udev runs, so each udev
# condition runs in a process (and kernel boot) of its own, and so does each
# group of scenarios with its own iteration count:
#   quick: milliseconds an iteration          BENCH_QUICK   (default 20x, 5 rounds)
#   files: file work, 0.1-4 s an iteration    BENCH_FILES   (default 3x, 3 rounds)
#   init:  Init of homes of 500..10 000 layers BENCH_INIT   (default 1x, 3 rounds)
#   engine: Docker Engine 20.10 on the thinlayer plugin against Docker on
#          its built-in devicemapper (dockerplugin/enginetest), and
#          containerd on the thinlayer snapshotter against its devmapper
#          snapshotter (containerd/adapter); seconds an operation
#                                              BENCH_ENGINE (default 1x, 3 rounds)
#   concurrency: 1, 8 and 32 goroutines of container lifecycles, 8 concurrent
#          pulls; Nx is operations per goroutine  BENCH_CONC (default 2x, 3 rounds)
#   filefloor: ApplyDiff100 and DiffBase with their floors only (the files
#          group runs them too)                   BENCH_FILES
# With udev every device event Moby's driver waits for costs ~0.3 s in UML
# (udev's rules start processes; its Remove100 takes ~100 s), so that
# condition gets fewer iterations: BENCH_QUICK_UDEV (10x, 3 rounds) and
# BENCH_FILES_UDEV (1x, 3 rounds). File I/O in the guest is noisy (its
# memory is a file on the host's disk): rounds, not iterations, tame it.
# A round runs a scenario on every driver in turn; go test's "Nx" runs one
# iteration more to start with, which is not counted. BENCH_CONDITIONS and
# BENCH_GROUPS pick a part ("NoUdev", "quick init", ...).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
raw=$out/bench.txt
: >"$raw"
export THINLAYER_REQUIRE_KERNEL=1
read -r quick_bt quick_rounds <<<"${BENCH_QUICK:-20x 5}"
read -r files_bt files_rounds <<<"${BENCH_FILES:-3x 3}"
read -r init_bt init_rounds <<<"${BENCH_INIT:-1x 3}"
read -r quick_udev_bt quick_udev_rounds <<<"${BENCH_QUICK_UDEV:-10x 3}"
read -r files_udev_bt files_udev_rounds <<<"${BENCH_FILES_UDEV:-1x 3}"
read -r engine_bt engine_rounds <<<"${BENCH_ENGINE:-1x 3}"
read -r conc_bt conc_rounds <<<"${BENCH_CONC:-2x 3}"
read -r conc_udev_bt conc_udev_rounds <<<"${BENCH_CONC_UDEV:-1x 3}"
# Moby's Init reads every layer's DevInfo file: ~90 s a run at 10 000
# layers on a busy 2-core host. Its growth shows from 500 to 5 000 already.
peer_init_max=${BENCH_PEER_INIT_MAX:-5000}
conditions=${BENCH_CONDITIONS:-NoUdev Udev}
engine_scenarios='DockerLoad10|DockerLoad50|DockerCreateRm|DockerCommit|DockerRmi50|DockerRunRm|DockerdStart500'
groups=${BENCH_GROUPS:-quick files init concurrency engine leave}

start=$(date +%s)
{
	echo "# make bench, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "# host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$raw"
(cd bench && go test -c -o "$out/bench.test" .)
if [[ " $groups " == *" engine "* ]]; then
	go test -c -o "$out/enginetest.test" ./dockerplugin/enginetest
	(cd containerd && go test -c -o "$out/adapter.test" ./adapter)
fi

run() { # condition pattern benchtime rounds [extra flags]: the bench module
	run_in bench "$out/bench.test" "$@"
}

run_in() { # dir test-binary condition pattern benchtime rounds [extra flags]
	local dir=$1 bin=$2 cond=$3 pat=$4 bt=$5 rounds=$6
	shift 6
	echo "# $cond $pat -benchtime $bt -rounds $rounds (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$raw"
	(cd "$dir" && "$bin" -test.run '^$' -test.bench "^Benchmark$cond\$/^($pat)\$" \
		-test.benchtime "$bt" -rounds "$rounds" -test.timeout 120m "$@") 2>&1 |
		grep --line-buffered -v 'Udev sync is not supported' | tee -a "$raw"
}

# leave: issue 14's thinlayer save vs docker save by Docker 20.10 on its own
# devicemapper, of one image of BENCH_LEAVE ("MiB layers rounds", default
# "1024 20 3"), in dockerplugin/enginetest's BenchmarkSaveLeave; a guest of
# BENCH_LEAVE_MEM (6G) holds the pool and docker save's spool. Docker's
# driver runs without udev: in the NoUdev condition only.
read -r leave_mib leave_layers leave_rounds <<<"${BENCH_LEAVE:-1024 20 3}"
run_leave() {
	echo "# leave SaveLeave $leave_mib MiB $leave_layers layers -leave-rounds $leave_rounds (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$raw"
	go test -c -o "$out/enginetest.test" ./dockerplugin/enginetest
	(cd dockerplugin/enginetest && THINLAYER_UML_MEM=${BENCH_LEAVE_MEM:-6G} "$out/enginetest.test" -test.run '^$' \
		-test.bench '^BenchmarkSaveLeave$' -test.benchtime 1x -test.timeout 120m -test.v \
		-leave-mib "$leave_mib" -leave-layers "$leave_layers" -leave-rounds "$leave_rounds") 2>&1 | tee -a "$raw"
}

for cond in $conditions; do
	qbt=$quick_bt qr=$quick_rounds fbt=$files_bt fr=$files_rounds
	cbt=$conc_bt cr=$conc_rounds
	if [ "$cond" = Udev ]; then
		qbt=$quick_udev_bt qr=$quick_udev_rounds fbt=$files_udev_bt fr=$files_udev_rounds
		cbt=$conc_udev_bt cr=$conc_udev_rounds
	fi
	for group in $groups; do
		case $group in
		quick) run "$cond" 'Exists|GetPutWarm|GetPutCold|CreateRemove|SnapPrepareCommit|SnapRemove|Lifecycle|ReadChain20' "$qbt" "$qr" ;;
		files) run "$cond" 'ApplyDiff100|DiffBase|Changes|DiffSize|ApplyDiff64M|Remove100' "$fbt" "$fr" ;;
		init) run "$cond" 'Init500|Init5000|Init10000' "$init_bt" "$init_rounds" -peer-init-max "$peer_init_max" ;;
		leave) if [ "$cond" = NoUdev ]; then run_leave; fi ;;
		engine)
			run_in dockerplugin/enginetest "$out/enginetest.test" "$cond" "${BENCH_ENGINE_SCENARIOS:-$engine_scenarios}" "$engine_bt" "$engine_rounds"
			run_in containerd/adapter "$out/adapter.test" "$cond" 'CtrImportRun' "$engine_bt" "$engine_rounds"
			;;
		concurrency) run "$cond" 'Concurrent1|Concurrent8|Concurrent32|Pull8' "$cbt" "$cr" ;;
		filefloor) run "$cond" 'ApplyDiff100|DiffBase' "$fbt" "$fr" ;;
		*) echo "bench: unknown group $group" >&2 && exit 2 ;;
		esac
	done
done
if grep -qE '^(--- FAIL|FAIL|panic)' "$raw"; then
	echo "bench: a benchmark failed, see $raw" >&2
	exit 1
fi
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg); make bench took $(( $(date +%s) - start )) s" | tee -a "$raw"
echo
if grep -q '/driver=' "$raw"; then # the leave group alone has no table
	(cd bench && go run ./cmd/benchtable "$raw") | tee "$out/table.md"
fi
