#!/bin/bash
# Issue 11, stop 19: the refill sitting. Per round: the ring with the peers,
# then glommio alone (same cases), three interleaved rounds; release build
# of the commit named in the tables' header.
set -u
cd /work/main
OUT=${OUT:-/tmp/ab/peers19}; mkdir -p $OUT
for r in 1 2 3; do
  target/release/loadgen bench --peers --backend ring --cases closed-64x1,closed-64x16,open-2k-64,open-20k-64,open-50k-64,open-100k-64 --warmup 1 --duration 4 --floor-secs 1 \
    --no-server-syscalls --no-progress --wait-quiet 60 --out $OUT/ring-r$r --name ring > $OUT/ring-r$r.txt 2>&1
  echo "peers+ring r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  target/release/loadgen bench --backend glommio --cases closed-64x1,closed-64x16,open-2k-64,open-20k-64,open-50k-64,open-100k-64 --warmup 1 --duration 4 --floor-secs 1 \
    --no-server-syscalls --no-progress --wait-quiet 60 --out $OUT/glommio-r$r --name glommio > $OUT/glommio-r$r.txt 2>&1
  echo "glommio r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
done
echo done
