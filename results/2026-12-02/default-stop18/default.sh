#!/bin/bash
# Ring against glommio (the default) at every load, three interleaved rounds.
set -u
cd /work/main
OUT=/tmp/ab/default; mkdir -p $OUT
for r in 1 2 3; do
  for b in ring glommio; do
    /tmp/ab/loadgen-after bench --backend $b --cases closed-64x1,closed-64x16,open-2k-64,open-20k-64,open-50k-64 --warmup 1 --duration 4 --floor-secs 1 \
      --no-server-syscalls --no-progress --wait-quiet 60 --out $OUT/$b-r$r --name $b > $OUT/$b-r$r.txt 2>&1
    echo "$b r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)" >> $OUT/progress.txt
  done
done
echo done >> $OUT/progress.txt
