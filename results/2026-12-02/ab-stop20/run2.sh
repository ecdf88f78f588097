#!/bin/bash
# Issue 11, stop 20, sitting 2: five more interleaved rounds of the open
# 20k/s and 50k/s cases, DEFER_TASKRUN (after) against COOP_TASKRUN (before).
set -u
OUT=${OUT:-/tmp/ab/out20b}; mkdir -p $OUT
for r in 1 2 3 4 5; do
  for b in before after; do
    /tmp/ab/loadgen-$b bench --backend ring --cases open-20k-64,open-50k-64 --warmup 1 --duration 4 --floor-secs 1 \
      --no-server-syscalls --no-progress --wait-quiet 30 --out $OUT/ring-$b-r$r --name ring-$b > $OUT/ring-$b-r$r.txt 2>&1
    echo "ring $b r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
