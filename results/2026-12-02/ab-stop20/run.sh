#!/bin/bash
# Issue 11, stop 20: before/after of DEFER_TASKRUN on the ring, one sitting.
# loadgen-before: release build of 57c103d (COOP_TASKRUN); loadgen-after:
# the same with IORING_SETUP_DEFER_TASKRUN. Interleaved rounds.
set -u
OUT=${OUT:-/tmp/ab/out20}; mkdir -p $OUT
for r in 1 2 3; do
  for b in before after; do
    /tmp/ab/loadgen-$b bench --backend ring --cases closed-64x1,open-2k-64,open-20k-64,open-50k-64 --warmup 1 --duration 4 --floor-secs 1 \
      --no-server-syscalls --no-progress --wait-quiet 30 --out $OUT/ring-$b-r$r --name ring-$b > $OUT/ring-$b-r$r.txt 2>&1
    echo "ring $b r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
# Syscalls per call, one run each (perf on).
for b in before after; do
  /tmp/ab/loadgen-$b bench --backend ring --cases open-2k-64,open-20k-64 --warmup 1 --duration 4 --floor-secs 1 \
    --no-progress --wait-quiet 30 --out $OUT/sys-$b --name sys-$b > $OUT/sys-$b.txt 2>&1
  echo "sys $b $(date +%T)"
done
