#!/bin/bash
# Kernel+user profile of the server core at 20k/s: fastwebsockets echo vs HardLight RPC (ring).
cd /work/main
R=${RATE:-20k}
prof() { # name url scenario pid
  ./target/release/loadgen run --url $2 --server-pid $4 --scenario $3 --mode open --rate $R --connections 64 --warmup 1 --duration 6 --floor-secs 0 --no-server-syscalls --no-progress --out /tmp/prof/lg --name $1 > /tmp/prof/$1.txt 2>&1 &
  LG=$!
  sleep 2.5
  perf record -q -C 1 -g -o /tmp/prof/$1.data -- sleep 4 2>/dev/null
  wait $LG
}
taskset -c 1 ./target/release/echo-fastwebsockets --listen 127.0.0.1:9101 --cpu 1 > /tmp/prof/fws.log 2>&1 &
P=$!; sleep 1
prof fws ws://127.0.0.1:9101/ raw-echo $P
kill $P
./target/release/loadgen serve --listen 127.0.0.1:9102 --cpu 1 > /tmp/prof/hl.log 2>&1 &
P=$!; sleep 1
prof hl ws://127.0.0.1:9102/ echo64 $P
kill $P
