#!/bin/bash
set -u
for r in 1 2; do
  for b in before final; do
    if [ $b = before ]; then bin=/work/wt-before/target/release/loadgen; else bin=/work/main/target/release/loadgen; fi
    $bin bench --cases closed-64x1,closed-64x16,open-20k-64 --warmup 1 --duration 4 --floor-secs 1 \
      --no-server-syscalls --no-progress --out /tmp/ab/final/$b-r$r --name $b > /tmp/ab/final/$b-r$r.txt 2>&1
    echo "$b r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
