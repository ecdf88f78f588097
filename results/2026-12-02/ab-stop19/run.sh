#!/bin/bash
# Issue 11, stop 19: before/after of the ring's multishot receive, one sitting.
# loadgen-before: release build of bb6cf36 (one-shot receive per message);
# loadgen-after: the same plus multishot receive into a provided-buffer ring.
set -u
OUT=${OUT:-/tmp/ab/out19}; mkdir -p $OUT
for r in 1 2 3; do
  for b in before after; do
    /tmp/ab/loadgen-$b bench --backend ring --cases closed-64x1,closed-64x16,open-2k-64,open-20k-64,open-50k-64 --warmup 1 --duration 4 --floor-secs 1 \
      --no-server-syscalls --no-progress --wait-quiet 30 --out $OUT/ring-$b-r$r --name ring-$b > $OUT/ring-$b-r$r.txt 2>&1
    echo "ring $b r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
