#!/usr/bin/env bash
# Runs descent and every installed peer (PyTorch eager, JAX, micrograd; candle on W1 and
# W3, from peers/candle, built here unless CANDLE=0) on W1..W6,
# alternating implementations within each round, and writes a markdown table of
# medians and ratios to docs/PERFORMANCE-TABLE.md (see shared/docs/WORKLOADS.md).
#
#   crates/bench/run_peers.sh [--reps K] [--rounds R] [--workloads W1,W3] [--out FILE]
#                             [--features descent/avx512]
#   (W10, the wide-layer small-batch MLP, runs only when named: --workloads W3,W10; its
#   peers are crates/bench/w10_peers.py)
#   --features builds descent-bench with those cargo features, into target/bench-features
#   (the default build stays), and says so in the table's notes: the `avx512` feature
#   runs every product on AVX-512 kernels (the default build does on Intel processors,
#   except where AVX2 measured faster).
#   crates/bench/run_peers.sh --table-only target/peers-run/<stamp> [--rounds R] [--reps K]
#                                          (rebuild the table from kept JSON lines)
#
# Pinning as in shared/peers/README.md: 1 thread = `taskset -c 0` + `--threads 1`,
# 2 threads = `taskset -c 0,1` + `--threads 2`. descent's `--threads` sizes rayon's
# pool: W4's per-sample passes and large matrix products (split by output blocks) use it.
#
# Interpreters (override with the environment):
#   TORCH_PY      default target/peers/venv-torch/bin/python   (torch)
#   JAX_PY        default target/peers/venv-jax/bin/python     (jax)
# crates/bench/setup_peers.sh creates both (see its --help; --dry-run shows the commands).
#   MICROGRAD_PY  default: the first of JAX_PY, TORCH_PY that can `import micrograd`.
#                 micrograd's W2 takes ~3.5 minutes a run: it runs once, in round 1 only,
#                 and only with MICROGRAD=1; otherwise the speed issue's figure
#                 (1,947 ms/step) is quoted.
# A peer whose interpreter is missing or cannot import its framework is skipped, with
# a note in the table. Raw JSON lines are kept in target/peers-run/<stamp>/.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
peers="$(cd "$root/../shared/peers" 2>/dev/null && pwd || true)"
reps=3
rounds=2
workloads="W1,W2,W3,W4,W5,W6"
out="$root/docs/PERFORMANCE-TABLE.md"
table_only=""
features=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --workloads) workloads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --features) features="$2"; shift 2 ;;
    --table-only) table_only="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

TORCH_PY="${TORCH_PY:-$root/target/peers/venv-torch/bin/python}"
export TORCH_PY
JAX_PY="${JAX_PY:-$root/target/peers/venv-jax/bin/python}"
export JAX_PY
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
raw="$root/target/peers-run/$stamp"
if [ -n "$table_only" ]; then raw="$(cd "$table_only" && pwd)"; fi
mkdir -p "$raw"
notes="$raw/notes.txt"
cmds="$raw/commands.txt"
if [ -z "$table_only" ]; then
: > "$notes"; : > "$cmds"

has() { [ -x "$1" ] && "$1" -c "import $2" >/dev/null 2>&1; }
have_torch=0; have_jax=0; MG_PY=""
if has "$TORCH_PY" torch; then have_torch=1; else echo "PyTorch: not found ($TORCH_PY cannot import torch): skipped" >> "$notes"; fi
if has "$JAX_PY" jax; then have_jax=1; else echo "JAX: not found ($JAX_PY cannot import jax): skipped" >> "$notes"; fi
if [ -n "${MICROGRAD_PY:-}" ] && has "$MICROGRAD_PY" micrograd; then MG_PY="$MICROGRAD_PY"
else for p in "$JAX_PY" "$TORCH_PY"; do if has "$p" micrograd; then MG_PY="$p"; break; fi; done; fi
if [ -z "$MG_PY" ]; then
  echo "micrograd: not installed in any interpreter: skipped; its W2 row quotes the speed issue's figure (1,947 ms/step, same machine)" >> "$notes"
elif [ "${MICROGRAD:-0}" != 1 ]; then
  echo "micrograd: installed ($MG_PY) but not run (~3.5 min; set MICROGRAD=1); its W2 row quotes the speed issue's figure (1,947 ms/step)" >> "$notes"
  MG_PY=""
fi
[ -z "$peers" ] && echo "shared/peers not found next to the repository: only descent runs" >> "$notes" && have_torch=0 && have_jax=0

if [ -n "$features" ]; then
  echo "building descent-bench (release, --features $features)..." >&2
  (cd "$root" && CARGO_TARGET_DIR="$root/target/bench-features" \
    cargo build --release -p descent-bench --features "$features" >&2) || { echo "build failed" >&2; exit 1; }
  bench="$root/target/bench-features/release/descent-bench"
  echo "descent: built with \`--features $features\` (not the default build)" >> "$notes"
else
  echo "building descent-bench (release)..." >&2
  (cd "$root" && cargo build --release -p descent-bench >&2) || { echo "build failed" >&2; exit 1; }
  bench="$root/target/release/descent-bench"
fi

# candle (peers/candle, W1 and W3), built into target/peers; CANDLE=0 skips it.
candle_bin="$root/target/peers/release/descent-peer-candle"
have_candle=0
if [ "${CANDLE:-1}" = 1 ]; then
  echo "building the candle peer (release; ~2.5 min the first time)..." >&2
  if (cd "$root/peers/candle" && CARGO_TARGET_DIR="$root/target/peers" cargo build --release >&2); then
    have_candle=1
  else
    echo "candle: the peer did not build: skipped" >> "$notes"
  fi
else
  echo "candle: skipped (CANDLE=0)" >> "$notes"
fi

# run <file> <cpus> <dir> <command...>: one process, its JSON lines into <file>.
run() {
  local file="$1" cpus="$2" dir="$3"; shift 3
  echo "(cd $dir && taskset -c $cpus $*)" >> "$cmds"
  echo "  $(basename "$file")" >&2
  (cd "$dir" && taskset -c "$cpus" "$@" 2>>"$raw/stderr.txt" | grep '^{' > "$file") \
    || echo "FAILED: taskset -c $cpus $* (see stderr.txt)" >> "$notes"
}

has_w() { case ",$workloads," in *",$1,"*) return 0 ;; esac; return 1; }

for r in $(seq 1 "$rounds"); do
  echo "round $r" >&2
  for w in W1 W2 W3 W4 W5 W6 W10; do
    has_w "$w" || continue
    case "$w" in W3|W4|W5|W10) threads="1 2" ;; *) threads="1" ;; esac
    wreps="$reps"; [ "$w" = W6 ] && wreps=$(( reps < 2 ? reps : 2 ))
    for t in $threads; do
      cpus=0; [ "$t" = 2 ] && cpus=0,1
      f="$raw/r${r}_${w}_t${t}"
      run "${f}_descent.jsonl" "$cpus" "$root" "$bench" "$w" --threads "$t" --reps "$wreps"
      if [ "$w" = W5 ]; then   # peak memory in a fresh process, as the peers measure it
        run "${f}_descent-mem.jsonl" "$cpus" "$root" "$bench" W5 --mem --threads "$t"
      fi
      if [ "$w" = W10 ]; then
        [ $have_torch = 1 ] && run "${f}_torch.jsonl" "$cpus" "$here" "$TORCH_PY" w10_peers.py --peer torch --threads "$t" --reps "$wreps"
        [ $have_jax = 1 ] && run "${f}_jax.jsonl" "$cpus" "$here" "$JAX_PY" w10_peers.py --peer jax --threads "$t" --reps "$wreps"
        continue
      fi
      [ $have_torch = 1 ] && run "${f}_torch.jsonl" "$cpus" "$peers" "$TORCH_PY" torch_workloads.py --workload "$w" --threads "$t" --reps "$wreps"
      [ $have_jax = 1 ] && run "${f}_jax.jsonl" "$cpus" "$peers" "$JAX_PY" jax_workloads.py --workload "$w" --threads "$t" --reps "$wreps"
      # candle takes its thread count from RAYON_NUM_THREADS.
      if [ $have_candle = 1 ] && { [ "$w" = W1 ] || [ "$w" = W3 ]; }; then
        run "${f}_candle.jsonl" "$cpus" "$root" env RAYON_NUM_THREADS="$t" "$candle_bin" "$w" --threads "$t" --reps "$wreps"
      fi
      if [ "$w" = W2 ] && [ "$r" = 1 ] && [ -n "$MG_PY" ]; then
        run "${f}_micrograd.jsonl" 0 "$peers" "$MG_PY" micrograd_workloads.py --workload W2 --reps 1
      fi
    done
  done
done

fi  # not --table-only

python3 - "$raw" "$out" "$reps" "$rounds" <<'PY'
import glob, json, os, re, statistics, subprocess, sys
raw, out, reps, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def main_time(d):
    """(metric name, value) of a JSON line: the workload's headline time."""
    w = d["workload"]
    if w == "W1": return "us/step", d["us_per_step"]["median"]
    if w in ("W2", "W3", "W5", "W10"): return "ms/step", d["ms_per_step"]["median"]
    if w == "W4": return "ms/batch", d["ms_per_batch"]["median"]
    if w == "W6":
        if "ns_per_op_backward" in d:
            return "ns/op fw+bw", d["ns_per_op_forward"]["median"] + d["ns_per_op_backward"]["median"]
        return "ns/op fw+bw", d["ns_per_op_value_and_grad"]["median"]
    raise KeyError(w)

def check(d):
    for k in ("final_x", "final_loss", "first_avg_grad_l2", "grad_norm_before_clip_step0", "value"):
        if d.get(k) is not None:
            return f"{k} {d[k]:.10g}"
    return ""

rows = {}   # (workload, threads, impl, variant, metric) -> {round: value}
w4_workers = {}   # threads -> {round: [each thread's median us a sample]}
checks = {}
for path in sorted(glob.glob(os.path.join(raw, "r*_*.jsonl"))):
    m = re.match(r"r(\d+)_(W\d+)_t(\d)_(.+)\.jsonl", os.path.basename(path))
    rnd, w, t, impl = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
    for line in open(path):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        variant = d.get("variant", d.get("mode", "")) or ""
        if impl == "descent-mem":
            for k in ("peak_rss_mib", "peak_minus_baseline_mib"):
                rows.setdefault((w, t, "descent", "fresh process", k), {})[rnd] = d[k]
            continue
        metric, v = main_time(d)
        key = (w, t, impl, variant, metric)
        rows.setdefault(key, {})[rnd] = v
        checks.setdefault(key, check(d))
        if w == "W5" and impl != "descent":
            for k in ("peak_rss_mib", "peak_minus_baseline_mib"):
                rows.setdefault((w, t, impl, variant, k), {})[rnd] = d[k]
        if w == "W6" and impl == "descent":
            rows.setdefault((w, t, "descent limit", "hand-written tape", metric), {})[rnd] = (
                d["limit_ns_per_op_forward"]["median"] + d["limit_ns_per_op_backward"]["median"])
        if w == "W1" and impl == "descent":
            rows.setdefault((w, t, "descent limit", "closed form", metric), {})[rnd] = d["limit_us_per_step"]["median"]
            rows.setdefault((w, t, "descent", "backward_into (reused grads)", metric), {})[rnd] = d["us_per_step_reused_grads"]["median"]
            # The tape's arithmetic without the tape: how much of a step is libm's.
            if "floor_us_per_step" in d:
                rows.setdefault((w, t, "descent limit", "the tape's libm calls, no tape", metric), {})[rnd] = d["floor_us_per_step"]["median"]
        if w in ("W3", "W4") and impl == "descent" and d.get("parallel_ceiling") is not None:
            # Two independent integer loops on the pool against one after the other,
            # probed before and after each repetition: what the second core gave
            # around then (a snapshot; its share changes within a second).
            rows.setdefault((w, t, "descent limit", "machine's parallel ceiling (probe around each rep)", "speed-up"), {})[rnd] = d["parallel_ceiling"]
        if w == "W3" and impl == "descent":
            rows.setdefault((w, t, "descent", "W stored [in, out] (no transpose nodes)", metric), {})[rnd] = d["ms_per_step_w_in_out"]["median"]
            rows.setdefault((w, t, "descent limit", "6*batch*weights at GEMM peak", metric), {})[rnd] = d["limit_ms_per_step"]
        if w == "W4" and impl == "descent" and d.get("workers"):
            # Each thread's median time a sample (its own work, no waiting), traced in
            # batches after the timed ones: a vCPU the host slows shows up here.
            # (null for a thread that never ran two samples in one batch)
            times = sorted(x["sample_us"] for x in d["workers"] if x["sample_us"] is not None)
            names = ["fastest thread"] if len(times) > 1 else ["one thread"]
            if len(times) > 1:
                names.append("slowest thread")
                times = [times[0], times[-1]]
            for n, v in zip(names, times):
                rows.setdefault((w, t, "descent", f"time a sample, {n}", "us/sample"), {})[rnd] = v
            if times:
                w4_workers.setdefault(t, {})[rnd] = times if t == 1 else [
                    x["sample_us"] for x in d["workers"] if x["sample_us"] is not None]
# W4's 1 -> 2 thread speed-up, round by round (both runs of a round are adjacent).
w4_1 = rows.get(("W4", 1, "descent", "per_sample_grads (rayon, fixed-order reduction)", "ms/batch"), {})
w4_2 = rows.get(("W4", 2, "descent", "per_sample_grads (rayon, fixed-order reduction)", "ms/batch"), {})
if w4_1 and w4_2:
    rows[("W4", 2, "descent", "speed-up 1 -> 2 threads (round by round)", "speed-up")] = {
        r: w4_1[r] / w4_2[r] for r in w4_1 if r in w4_2}
# What the two threads' own sample rates allow against the round's one-thread run,
# with no time lost between them: sum over threads of t1 / t_i.
if 1 in w4_workers and 2 in w4_workers:
    rows[("W4", 2, "descent limit", "speed-up the threads' own sample rates allow", "speed-up")] = {
        r: sum(w4_workers[1][r][0] / x for x in xs)
        for r, xs in w4_workers[2].items() if r in w4_workers[1]}
if not any(k[2] == "micrograd" for k in rows) and any(k[0] == "W2" for k in rows):
    rows[("W2", 1, "micrograd", "speed issue's figure (not run)", "ms/step")] = {}
micro_issue = 1947.0

def med(vals):
    return statistics.median(vals) if vals else None

def descent_ref(w, t, impl, metric):
    """The median of the descent row a peer row is compared with."""
    for (w2, t2, i2, v2, m2), vals in rows.items():
        if (w2, t2, i2, m2) != (w, t, "descent", metric) or not vals:
            continue
        if w == "W2" and ("scalar" in v2) != (impl == "micrograd"):
            continue
        if w == "W1" and v2 == "backward_into (reused grads)":
            continue
        if w == "W3" and v2 != "":
            continue
        if w == "W5" and v2 != ("fresh process" if metric.startswith("peak") else "timing"):
            continue
        return med(list(vals.values()))
    return None

def fmt(x):
    if x is None: return "-"
    if x == 0: return "0"
    if abs(x) >= 100: return f"{x:.0f}"
    if abs(x) >= 10: return f"{x:.1f}"
    if abs(x) >= 0.1: return f"{x:.2f}"
    return f"{x:.3g}"

nr = int(rounds)
lines = []
order = {"descent": 0, "descent limit": 1, "torch": 2, "jax": 3, "candle": 4, "micrograd": 5}
for key in sorted(rows, key=lambda k: (k[0], k[1], k[4] != "ms/step" and k[4].startswith("peak"), order.get(k[2], 9), k[3])):
    w, t, impl, variant, metric = key
    vals = rows[key]
    if impl == "micrograd" and not vals:
        m = micro_issue
        per = ["(issue) 1947"] + ["-"] * (nr - 1)
    else:
        m = med(list(vals.values()))
        per = [fmt(vals.get(r)) for r in range(1, nr + 1)]
    ref = descent_ref(w, t, impl, metric) if not impl.startswith("descent") else None
    ratio = f"**{ref / m:.3g}**" if (ref is not None and m) else ""
    peer_name = {"torch": "PyTorch eager", "jax": "JAX", "candle": "candle 0.11"}.get(impl, impl)
    lines.append(f"| {w} | {t} | {peer_name} | {variant or '-'} | {metric} | " + " | ".join(per)
                 + f" | {fmt(m)} | {ratio} | {checks.get(key, '')} |")

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
lscpu = sh("lscpu")
model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
flags = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Flags")), "?")
simd = " ".join(f for f in flags.split() if f.startswith(("avx", "fma", "sse4")))
notes = open(os.path.join(raw, "notes.txt")).read().strip()
cmds = open(os.path.join(raw, "commands.txt")).read().strip()
tv = sh(os.environ["TORCH_PY"]
        + " -c 'import torch; print(torch.__version__)' 2>/dev/null")
jv = sh(os.environ["JAX_PY"]
        + " -c 'import jax; print(jax.__version__)' 2>/dev/null")
versions = f"torch {tv or 'not installed'}, jax {jv or 'not installed'}"
head = "| workload | threads | implementation | variant | metric | " + " | ".join(
    f"round {r}" for r in range(1, nr + 1)) + " | median | descent / this | check |"
sep = "|" + "---|" * (5 + nr + 3)
doc = f"""# descent against the peers: W1..W6

Generated by `crates/bench/run_peers.sh` (do not edit by hand; rerun it).

- **Date:** {sh('date -u')}
- **CPU:** `lscpu` model name: {model}; {sh('nproc')} CPUs; SIMD flags: `{simd}`
- **Peers:** {versions}
- **Protocol:** {rounds} rounds; in each round, for each workload and thread count, descent then
  PyTorch then JAX then candle (W1 and W3, `peers/candle`) run one after the other
  (alternating), each a fresh process with
  `--reps {reps}` (W6: at most 2); a cell is that process's median over its repetitions;
  "median" is the median over the rounds. 1 thread = `taskset -c 0 ... --threads 1`,
  2 threads = `taskset -c 0,1 ... --threads 2`. descent's `--threads` sizes rayon's pool,
  which runs W4's per-sample passes and splits large matrix products by output blocks.
- **descent / this** = descent's median divided by this row's median (below 1: descent is
  faster; for memory rows: descent uses less). W2's scalar-node descent row is compared
  with micrograd, its batched row with PyTorch and JAX. Lower is better for every metric.
- Raw JSON lines: `target/peers-run/{os.path.basename(raw)}/`.

Notes:
{chr(10).join('- ' + n for n in notes.splitlines()) if notes else '- all peers ran'}

{head}
{sep}
{chr(10).join(lines)}

Commands (in order, round 1; later rounds repeat them):

```sh
{chr(10).join(cmds.splitlines()[:max(1, len(cmds.splitlines()) // nr)])}
```
"""
open(out, "w").write(doc)
print(f"wrote {out}", file=sys.stderr)
PY
