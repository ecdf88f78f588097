#!/bin/bash
# Issue 11, this session: before/after of the ring's send-completion change
# (and the glommio/ring/peers comparison for the default backend), one sitting.
# loadgen-before / fanout-before: release builds of d260c5a / 29bdae0 (before this stop's ring changes);
# loadgen-after / fanout-after: 38c11ea (ring TLS and the send-completion wake rule).
set -u
cd /work/main
OUT=/tmp/ab/out; mkdir -p $OUT
for r in 1 2; do
  for b in before after; do
    /tmp/ab/loadgen-$b bench --backend ring --cases closed-64x1,closed-64x16,open-20k-64,open-50k-64 --warmup 1 --duration 4 --floor-secs 1 \
      --no-server-syscalls --no-progress --wait-quiet 30 --out $OUT/ring-$b-r$r --name ring-$b > $OUT/ring-$b-r$r.txt 2>&1
    echo "ring $b r$r $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    /tmp/ab/fanout-$b --connections 10000 --emits 20 --server-cpus 1 --client-cpu 0 --backend ring > $OUT/fanout-ring-$b-r$r.json 2>/dev/null
    echo "fanout ring $b r$r $(grep -o '"median": [0-9.]*' $OUT/fanout-ring-$b-r$r.json | head -1)"
  done
  for f in floor-send floor-uring; do
    /tmp/ab/fanout-after --connections 10000 --emits 20 --server-cpus 1 --client-cpu 0 --backend $f > $OUT/fanout-$f-r$r.json 2>/dev/null
    echo "fanout $f r$r $(grep -o '"median": [0-9.]*' $OUT/fanout-$f-r$r.json | head -1)"
  done
  /tmp/ab/fanout-after --connections 10000 --emits 20 --server-cpus 1 --client-cpu 0 --backend glommio > $OUT/fanout-glommio-r$r.json 2>/dev/null
  echo "fanout glommio r$r $(grep -o '"median": [0-9.]*' $OUT/fanout-glommio-r$r.json | head -1)"
done
