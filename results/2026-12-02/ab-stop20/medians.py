import re,sys,glob,statistics as st
out=sys.argv[1]
def parse(f):
    res={};case=None;hdr=None
    for line in open(f):
        if line.startswith('## '): case=line[3:].strip(); hdr=None; continue
        if line.startswith('| run'): hdr=[c.strip() for c in line.strip().strip('|').split('|')]; continue
        if line.startswith('|--') or not line.startswith('|') or not hdr or not case: continue
        cells=[c.strip() for c in line.strip().strip('|').split('|')]
        row=dict(zip(hdr,cells))
        res[case]=row
    return res
def num(s):
    m=re.match(r'([\d.]+)\s*(k|M|us|ms)?',s)
    if not m: return None
    v=float(m.group(1)); u=m.group(2)
    return v*{'k':1e3,'M':1e6,'us':1,'ms':1000,None:1}[u]
data={}
for b in ['before','after']:
    for f in sorted(glob.glob(f'{out}/ring-{b}-r*.txt')):
        for case,row in parse(f).items():
            d=data.setdefault(case,{}).setdefault(b,[])
            d.append((num(row['completed calls/s']),num(row['latency p50']),num(row['latency p99']),float(row['server CPU per call (us)']),row['CPU taken by other work: client core / server core / whole machine']))
for case,bd in data.items():
    print('##',case)
    med={}
    for b,rows in bd.items():
        med[b]=[st.median([r[i] for r in rows]) for i in range(4)]
        print(f"  {b:6} calls/s {med[b][0]:9.0f} p50 {med[b][1]:7.1f} p99 {med[b][2]:7.1f} cpu/call {med[b][3]:6.2f}  runs cpu: {[r[3] for r in rows]} other: {[r[4] for r in rows]}")
    if 'before' in med and 'after' in med:
        print(f"  after/before: calls/s {med['after'][0]/med['before'][0]:.2f}x p99 {med['after'][2]/med['before'][2]:.2f}x cpu/call {med['after'][3]/med['before'][3]:.2f}x")
