#!/bin/sh
# Metrics off (A) against on (B), ABBA-interleaved, in one sitting:
# release build, server shard on CPU 1, load generator on CPU 0.
# Usage: results/2026-12-02-metrics/ab.sh OUT_DIR ROUNDS
set -e
out=${1:-/tmp/metrics-ab}; rounds=${2:-3}
lg=./target/release/loadgen
common="--warmup 1 --duration 5 --floor-secs 0.5 --cases closed-64x16,open-20k-64 --no-server-syscalls --no-progress --out $out"
i=1
while [ $i -le "$rounds" ]; do
  if [ $((i % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for arm in $order; do
    flag=""; [ "$arm" = on ] && flag="--metrics"
    echo "$(date -u +%T) round $i $arm load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/load.log"
    $lg bench $flag $common --name "$arm-$i" > /dev/null
  done
  i=$((i + 1))
done
