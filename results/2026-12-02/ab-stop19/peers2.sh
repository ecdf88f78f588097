#!/bin/bash
# Issue 11, stop 19, second refill sitting (after the plain echo joined the
# peers): per round the ring with the peers and HardLight's plain echo,
# then glommio alone, three interleaved rounds; then one round of each
# backend with the server's system calls counted (perf), at 2k and 20k/s.
set -u
cd /work/main
OUT=${OUT:-/tmp/ab/peers19b}; mkdir -p $OUT
CASES=closed-64x1,closed-64x16,open-2k-64,open-20k-64,open-50k-64,open-100k-64
for r in 1 2 3; do
  target/release/loadgen bench --peers --backend ring --cases $CASES --warmup 1 --duration 4 --floor-secs 1 \
    --no-server-syscalls --no-progress --wait-quiet 60 --out $OUT/ring-r$r --name ring > $OUT/ring-r$r.txt 2>&1
  echo "peers+ring r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  target/release/loadgen bench --backend glommio --cases $CASES --warmup 1 --duration 4 --floor-secs 1 \
    --no-server-syscalls --no-progress --wait-quiet 60 --out $OUT/glommio-r$r --name glommio > $OUT/glommio-r$r.txt 2>&1
  echo "glommio r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
done
for b in ring glommio; do
  target/release/loadgen bench --backend $b --cases open-2k-64,open-20k-64 --warmup 1 --duration 4 --floor-secs 1 \
    --no-progress --wait-quiet 60 --out $OUT/syscalls-$b --name syscalls-$b > $OUT/syscalls-$b.txt 2>&1
  echo "syscalls $b $(date +%T)"
done
echo done
