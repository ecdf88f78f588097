#!/usr/bin/env bash
# WebSocket conformance: runs the Autobahn test suite's cases 1 to 10 (with
# kosoku, a Python 3 runner of the Autobahn case files; no Docker) against
# the plain WebSocket echo server built on HardLight's own transport
# (server-uring/examples/autobahn_echo.rs, core `Mode::Echo`).
#
# Fails (exit 1) if any case is FAILED (or could not run); NON-STRICT and
# INFORMATIONAL verdicts are allowed and listed. Reports (kosoku's HTML/JSON
# and summary.md/summary.json) go to $AUTOBAHN_OUT (default target/autobahn).
#
#   .ci/autobahn.sh                   # cases 1.* to 10.*, default backend (ring)
#   AUTOBAHN_CASES="6.* 7.*" .ci/autobahn.sh
#   AUTOBAHN_BACKEND=glommio AUTOBAHN_OUT=target/autobahn-glommio .ci/autobahn.sh
#
# Section 12/13 (permessage-deflate) is out of scope: the server negotiates
# no extensions.
set -euo pipefail
cd "$(dirname "$0")/.."

KOSOKU_VERSION=0.1.0
OUT="${AUTOBAHN_OUT:-target/autobahn}"
# Sections 1 to 10 (the suite has no section 8).
CASES="${AUTOBAHN_CASES:-1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*}"
PARALLELISM="${AUTOBAHN_PARALLELISM:-2}"
RUN_TIMEOUT="${AUTOBAHN_TIMEOUT:-1200}"
BACKEND="${AUTOBAHN_BACKEND:-ring}"

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: the Autobahn run needs Python 3.10+ with pip ($PYTHON not found or too old)" >&2
  exit 1
fi
if ! "$PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('kosoku') != '$KOSOKU_VERSION')" 2>/dev/null; then
  echo "== installing kosoku==$KOSOKU_VERSION"
  "$PYTHON" -m pip install --quiet "kosoku==$KOSOKU_VERSION"
fi

echo "== building the echo server (release)"
cargo build --release -p hardlight-server --example autobahn_echo
BIN="${CARGO_TARGET_DIR:-target}/release/examples/autobahn_echo"

mkdir -p "$OUT"
SERVER_LOG="$OUT/server.log"
# Port 0: the server picks a free port and prints it.
"$BIN" --listen 127.0.0.1:0 --backend "$BACKEND" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
stop_server() {
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap stop_server EXIT

ADDR=""
for _ in $(seq 1 100); do
  ADDR="$(sed -n 's/^echo listening on ws:\/\/\([0-9.]*:[0-9]*\).*/\1/p' "$SERVER_LOG" | head -n 1)"
  [ -n "$ADDR" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "error: the echo server exited during start-up:" >&2
    cat "$SERVER_LOG" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  echo "error: the echo server did not report its address within 10 s" >&2
  cat "$SERVER_LOG" >&2
  exit 1
fi
echo "== echo server ($BACKEND) on ws://$ADDR; running cases: $CASES (parallelism $PARALLELISM)"

set +e
# shellcheck disable=SC2086 # CASES is a list of globs passed as separate args
timeout "$RUN_TIMEOUT" "$PYTHON" - "ws://$ADDR" "$OUT" "$PARALLELISM" $CASES <<'PY'
import asyncio
import collections
import json
import sys
import time

from kosoku import FailureError, run_fuzzingclient

url, outdir, parallelism, cases = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]


async def run():
    try:
        return await run_fuzzingclient(url, cases, None, concurrency=parallelism)
    except FailureError as failure:
        return failure.results


def section(case_id):
    return int(case_id.split(".")[0])


started = time.time()
results = asyncio.run(run())
elapsed = time.time() - started

try:  # kosoku's own Autobahn-style HTML/JSON reports (a private helper; optional)
    from kosoku._report import write_reports

    write_reports(results, outdir)
except Exception as e:  # noqa: BLE001
    print(f"note: could not write kosoku's HTML reports: {e}", file=sys.stderr)

VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "FAILED")
per_section = collections.OrderedDict()
notable, failed, rows = [], [], []
for r in sorted(results, key=lambda r: [int(p) for p in r.case_id.split(".")]):
    behavior, close = r.behavior.value, r.behavior_close.value
    if not r.passed:
        verdict = "FAILED"
    elif "NON-STRICT" in (behavior,):
        verdict = "NON-STRICT"
    elif "INFORMATIONAL" in (behavior, close):
        verdict = "INFORMATIONAL"
    else:
        verdict = "OK"
    counts = per_section.setdefault(section(r.case_id), collections.Counter())
    counts[verdict] += 1
    row = {
        "case": r.case_id,
        "verdict": verdict,
        "behavior": behavior,
        "behavior_close": close,
        "remote_close_code": r.remote_close_code,
        "duration_ms": r.duration,
        "result": r.result,
        "result_close": r.result_close,
    }
    rows.append(row)
    if verdict == "FAILED":
        failed.append(row)
    elif verdict != "OK":
        notable.append(row)

total = collections.Counter()
for c in per_section.values():
    total.update(c)

lines = [
    "| section | cases | OK | NON-STRICT | INFORMATIONAL | FAILED |",
    "| --- | --- | --- | --- | --- | --- |",
]
for sec, c in per_section.items():
    lines.append(f"| {sec} | {sum(c.values())} | " + " | ".join(str(c[v]) for v in VERDICTS) + " |")
lines.append(f"| **all** | **{sum(total.values())}** | " + " | ".join(f"**{total[v]}**" for v in VERDICTS) + " |")
table = "\n".join(lines)
detail = []
for title, group in (("Failed", failed), ("Non-strict and informational", notable)):
    if group:
        detail.append(f"\n{title}:\n")
        for row in group:
            detail.append(
                f"- {row['case']}: {row['verdict']} (behavior {row['behavior']}, close {row['behavior_close']}, "
                f"close code {row['remote_close_code']}): {row['result']} {row['result_close']}".rstrip()
            )
summary = f"{table}\n" + "\n".join(detail) + "\n"
with open(f"{outdir}/summary.md", "w") as f:
    f.write(f"Cases {' '.join(cases)} against {url}, {len(results)} run in {elapsed:.0f} s.\n\n{summary}")
with open(f"{outdir}/summary.json", "w") as f:
    json.dump({"cases": cases, "elapsed_s": round(elapsed, 1), "totals": dict(total), "results": rows}, f, indent=1)

print(summary)
print(f"{len(results)} cases in {elapsed:.0f} s: " + ", ".join(f"{total[v]} {v}" for v in VERDICTS))
if not results:
    print("error: no case ran", file=sys.stderr)
    sys.exit(1)
sys.exit(1 if failed else 0)
PY
STATUS=$?
set -e
if [ "$STATUS" -eq 124 ]; then
  echo "error: kosoku did not finish within ${RUN_TIMEOUT} s" >&2
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "error: the echo server died during the run; its log:" >&2
  tail -n 50 "$SERVER_LOG" >&2
  STATUS=1
fi
stop_server
if [ "$STATUS" -ne 0 ]; then
  echo "== Autobahn: FAILED (reports in $OUT)" >&2
  exit 1
fi
echo "== Autobahn: passed (reports in $OUT)"
