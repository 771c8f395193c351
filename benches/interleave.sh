#!/usr/bin/env bash
# Interleaved runs of one probe program's variants, for figures on a noisy machine: each round
# runs every variant once, in turn, so drift hits them alike. Prints, per variant, the median
# time per call and the median of its per-round overhead over the first variant.
#
#   benches/interleave.sh <rounds> <calls> <program> <baseline> <variant>...
#   benches/interleave.sh 21 400000 target/release/examples/bearer_interleaved bare ours_1 ours_100 tower_http
#
# Build the program first: cargo build --release -p tower-armor-benches --example bearer_interleaved
# Needs `perf` (task-clock of each run).
set -euo pipefail
rounds=$1 calls=$2 program=$3
shift 3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
  for v in "$@"; do
    ms=$(perf stat -x, -e task-clock "$program" "$v" "$calls" 2>&1 >/dev/null | grep task-clock | cut -d, -f1)
    echo "$r $v $ms" >>"$out"
  done
done
python3 - "$calls" "$out" "$@" <<'PY'
import statistics, sys
calls, path, variants = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
by_round = {}
for line in open(path):
    r, v, ms = line.split()
    by_round.setdefault(r, {})[v] = float(ms) * 1e6 / calls
base = variants[0]
for v in variants:
    per_call = [row[v] for row in by_round.values()]
    overhead = [row[v] - row[base] for row in by_round.values()]
    print(f"{v:12s} {statistics.median(per_call):8.1f} ns/call  overhead {statistics.median(overhead):7.1f} ns"
          f"  (rounds {min(overhead):.0f} .. {max(overhead):.0f})")
PY
