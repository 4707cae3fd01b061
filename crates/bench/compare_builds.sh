#!/usr/bin/env bash
# Times two builds of descent-bench against each other, alternated in one run so that
# the machine's drift falls on both: each runs `all` at 1 and 2 threads, three rounds
# (ROUNDS=N for another count).
# Usage: crates/bench/compare_builds.sh OLD_BINARY NEW_BINARY [OUT_DIR]
# Build the old one from a worktree of the old commit, with the same release profile:
#   git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release -p descent-bench)
set -euo pipefail
old=$1 new=$2 out=${3:-target/compare}
mkdir -p "$out"
rm -f "$out"/{old,new}_t{1,2}.json
for round in $(seq 1 "${ROUNDS:-3}"); do
  for t in 1 2; do
    cpus=0; [ "$t" = 2 ] && cpus=0,1
    taskset -c $cpus "$old" all --threads $t --reps 3 >> "$out/old_t$t.json" 2>/dev/null
    taskset -c $cpus "$new" all --threads $t --reps 3 >> "$out/new_t$t.json" 2>/dev/null
  done
  echo "round $round done" >&2
done
python3 - "$out" <<'PY'
import json, statistics as st, sys
out = sys.argv[1]
keys = {'W1': 'us_per_step', 'W6': 'ns_per_op_total', 'W4': 'ms_per_batch', 'W3': 'ms_per_step', 'W5': 'ms_per_step'}
print("| threads | workload | old | new | ratio |\n|---|---|---|---|---|")
for t in (1, 2):
    res = {}
    for side in ('old', 'new'):
        for line in open(f'{out}/{side}_t{t}.json'):
            d = json.loads(line); w = d['workload']
            k = ('W2 ' + d['variant'][:7], 'ms_per_step') if w == 'W2' else (w, keys.get(w))
            if k[1] not in d:
                continue
            res.setdefault(k[0], {}).setdefault(side, []).append(d[k[1]]['median'])
            if w == 'W1':
                res.setdefault('W1 reused', {}).setdefault(side, []).append(d['us_per_step_reused_grads']['median'])
    for w in sorted(res):
        o, n = st.median(res[w]['old']), st.median(res[w]['new'])
        print(f"| {t} | {w} | {o:.4g} | {n:.4g} | {n / o:.3f} |")
PY
