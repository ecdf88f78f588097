#!/usr/bin/env python3
"""Summarizes an ab.sh folder: one row per run, then medians per arm and case."""
import glob, json, statistics, sys

out = sys.argv[1]
rows = {}
print("| run | case | completed calls/s | server CPU/call (us) | p50 (us) | p99 (us) | other work (client/server core) |")
print("|---|---|---|---|---|---|---|")
for f in sorted(glob.glob(f"{out}/*/summary.json")):
    d = json.load(open(f))
    arm = d["run"].split("-")[0]
    case = "closed-64x16" if d["mode"] == "closed" else "open-20k-64"
    other = f'{d["client_core"].get("other", 0):.0%}/{d["server_core"].get("other", 0):.0%}'
    cpu = d["server_cpu_per_call_ns"] / 1000
    print(f'| {d["run"].rsplit("-hardlight", 1)[0]} | {case} | {d["achieved_rate"]/1000:.1f}k | {cpu:.2f} | {d["p50_us"]:.0f} | {d["p99_us"]:.0f} | {other} |')
    rows.setdefault((case, arm), []).append((d["achieved_rate"], cpu))
print()
print("| case | arm | runs | median calls/s | median server CPU/call (us) |")
print("|---|---|---|---|---|")
for case in ["closed-64x16", "open-20k-64"]:
    med = {}
    for arm in ["off", "on"]:
        r = rows.get((case, arm), [])
        if not r:
            continue
        med[arm] = (statistics.median(x for x, _ in r), statistics.median(c for _, c in r))
        print(f"| {case} | {arm} | {len(r)} | {med[arm][0]/1000:.1f}k | {med[arm][1]:.3f} |")
    if len(med) == 2:
        print(f"| {case} | on/off | | {med['on'][0]/med['off'][0]:.3f}x | {med['on'][1]/med['off'][1]:.3f}x |")
