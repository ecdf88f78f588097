#!/bin/bash
# Issue 11, stop 19, second sitting: one-shot (before) against multishot with
# 1024 buffers at a 4 KiB stride (after) and 256 buffers at a 4160-byte
# stride (after2), on the cases where the first sitting disagreed.
set -u
OUT=${OUT:-/tmp/ab/out19b}; mkdir -p $OUT
for r in 1 2 3; do
  for b in before after after2; do
    /tmp/ab/loadgen-$b bench --backend ring --cases closed-64x1,open-20k-64,open-50k-64 --warmup 1 --duration 4 --floor-secs 1 \
      --no-server-syscalls --no-progress --wait-quiet 30 --out $OUT/ring-$b-r$r --name ring-$b > $OUT/ring-$b-r$r.txt 2>&1
    echo "ring $b r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
