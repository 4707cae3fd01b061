#!/usr/bin/env bash
# descent-mpi's checks: builds the crate (debug) and runs `dp_check` under mpirun with
# 1, 2, 3 and 4 ranks, comparing the final parameters bit for bit (`cmp`) with one
# process doing gradient accumulation. Needs Open MPI (`mpirun`) and libclang.
#
#   crates/mpi/run_tests.sh            # from anywhere; CARGO_TARGET_DIR is honoured
#
# Every mpirun is under `timeout`, so a hang fails the script instead of stalling it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

cargo build --manifest-path "$here/Cargo.toml" --bins --examples
cargo test --manifest-path "$here/Cargo.toml"
bin="$CARGO_TARGET_DIR/debug/dp_check"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# Threads per rank (passed to every rank with `-x`); some runs set it themselves.
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-2}"
run() { # run N ARGS...: dp_check under mpirun with N ranks, at most 120 s
  local n="$1"
  shift
  timeout 120 mpirun --allow-run-as-root --oversubscribe -x RAYON_NUM_THREADS -np "$n" "$bin" "$@"
}
same() { # same A B WHAT
  if cmp -s "$1" "$2"; then
    echo "ok: $3"
  else
    echo "FAILED: $3 (bits differ from the single-process reference)"
    diff "$1" "$2" | head -5
    exit 1
  fi
}

steps=10
"$bin" reference --steps $steps --out ref.txt
"$bin" reference --steps $steps --dp --out ref_dp.txt

for n in 1 2 3 4; do
  for threads in 1 2; do
    RAYON_NUM_THREADS=$threads run "$n" mpi --steps $steps --out "o_${n}_${threads}.txt"
    same ref.txt "o_${n}_${threads}.txt" "$n ranks, $threads threads each: ordered reduction == one process"
  done
  RAYON_NUM_THREADS=2 run "$n" mpi --steps $steps --dp --out "dp_$n.txt"
  same ref_dp.txt "dp_$n.txt" "$n ranks: DP-SGD (per-sample clipping, noise once) == one process"
  RAYON_NUM_THREADS=1 run "$n" mpi --steps $steps --sharded --out "sh_$n.txt"
  same ref.txt "sh_$n.txt" "$n ranks: sharded optimiser step == one process"
  run "$n" mpi --steps $steps --allreduce --out "ar_$n.txt"
  if cmp -s ref.txt "ar_$n.txt"; then
    echo "note: $n ranks, all-reduce: same bits as one process this time"
  else
    echo "note: $n ranks, all-reduce: final loss $(tail -1 "ar_$n.txt" | cut -d' ' -f3), one process $(tail -1 ref.txt | cut -d' ' -f3) (not bit-stable, as documented)"
  fi
  run "$n" mismatch
done

# Resuming with another rank count: 2 ranks for 4 steps, then 3 ranks to the end.
run 2 mpi --steps 4 --ckpt ck --out /dev/null
run 3 mpi --steps $steps --ckpt ck --resume --out resumed.txt
same ref.txt resumed.txt "2 ranks for 4 steps, checkpoint, 3 ranks to step $steps == one process"

# The sharded optimiser's state across checkpoints: sharded on 2 ranks for 3 steps,
# sharded on 3 ranks to step 6, plain on 4 ranks to the end; and plain to sharded.
rm -rf ck
run 2 mpi --steps 3 --sharded --ckpt ck --out /dev/null
run 3 mpi --steps 6 --sharded --ckpt ck --resume --out /dev/null
run 4 mpi --steps $steps --ckpt ck --resume --out resumed_sh.txt
same ref.txt resumed_sh.txt "sharded on 2 then 3 ranks, checkpoints, plain on 4 ranks == one process"
rm -rf ck
run 3 mpi --steps 5 --ckpt ck --out /dev/null
run 2 mpi --steps $steps --sharded --ckpt ck --resume --out resumed_sh2.txt
same ref.txt resumed_sh2.txt "plain on 3 ranks, checkpoint, sharded on 2 ranks == one process"
rm -rf ck
# Adam (AMSGrad): buffers and per-parameter step counts, sharded on 1..4 ranks, and a
# sharded checkpoint written byte for byte as the plain step's.
"$bin" reference --steps $steps --adam --out ref_adam.txt
for n in 1 2 3 4; do
  RAYON_NUM_THREADS=1 run "$n" mpi --steps $steps --adam --sharded --out "adam_$n.txt"
  same ref_adam.txt "adam_$n.txt" "$n ranks: sharded Adam == one process"
done
run 2 mpi --steps 4 --adam --ckpt ck_plain --out /dev/null
run 3 mpi --steps 4 --adam --sharded --ckpt ck_sharded --out /dev/null
for f in optimizer.safetensors params.safetensors; do
  if ! cmp -s "ck_plain/step-000000004/$f" "ck_sharded/step-000000004/$f"; then
    echo "FAILED: the sharded checkpoint's $f differs from the plain step's"
    exit 1
  fi
done
echo "ok: a checkpoint of sharded Adam on 3 ranks == the plain step's on 2 ranks, byte for byte"
run 2 mpi --steps $steps --adam --sharded --ckpt ck_sharded --resume --out adam_resumed.txt
same ref_adam.txt adam_resumed.txt "sharded Adam resumed on 2 ranks == one process"
rm -rf ck_plain ck_sharded
# A frozen parameter leaves a gap in the flat layout, which the shards skip.
"$bin" reference --steps $steps --freeze b1 --out ref_frozen.txt
for flags in "" "--sharded"; do
  run 3 mpi --steps $steps --freeze b1 $flags --out frozen.txt
  same ref_frozen.txt frozen.txt "3 ranks, b1 frozen ${flags:-(plain)} == one process"
done
# A NaN in one rank's gradient: every rank refuses the step with the same error.
for flags in "" "--sharded"; do
  set +e
  run 3 mpi --steps $steps $flags --nan-rank 0 --nan-step 2 --out /dev/null >nan.log 2>&1
  rc=$?
  set -e
  # Occurrences, not lines: the ranks' messages can interleave on one line.
  n_err="$( (grep -o 'NonFinite' nan.log || true) | wc -l)"
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$n_err" -lt 3 ]; then
    echo "FAILED: a NaN gradient ($flags) gave exit code $rc and $n_err errors of 3"
    cat nan.log
    exit 1
  fi
  echo "ok: a NaN in rank 0's gradient ${flags:-(plain)}: the step refused on all 3 ranks: $(grep -m1 'NonFinite' nan.log)"
done

# A rank killed in the middle of step 6: the job ends (no hang), the checkpoint of
# step 6 is intact, and a restart on 4 ranks ends where one process does.
rm -rf ck
set +e
timeout 60 mpirun --allow-run-as-root --oversubscribe -np 3 "$bin" mpi --steps $steps \
  --ckpt ck --die-rank 1 --die-step 6 --out /dev/null >die.log 2>&1
rc=$?
set -e
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
  echo "FAILED: a killed rank gave exit code $rc (0: not noticed; 124: hung)"
  exit 1
fi
grep -q "dies in the middle of step 6" die.log
[ "$(cat ck/LATEST)" = "step-000000006" ] || { echo "FAILED: LATEST is $(cat ck/LATEST)"; exit 1; }
echo "ok: rank 1 killed in step 6: job ended with exit code $rc, LATEST = $(cat ck/LATEST)"
run 4 mpi --steps $steps --ckpt ck --resume --out restarted.txt
same ref.txt restarted.txt "restart on 4 ranks after the kill == one process"

# A rank that stops answering: the others' bounded waits end the job (MPI_Abort, 75).
rm -rf ck
set +e
DESCENT_MPI_TIMEOUT=3 timeout 60 mpirun --allow-run-as-root --oversubscribe -x DESCENT_MPI_TIMEOUT \
  -np 3 "$bin" mpi --steps $steps --ckpt ck --hang-rank 2 --hang-step 5 --out /dev/null >hang.log 2>&1
rc=$?
set -e
if [ "$rc" -ne 75 ]; then
  echo "FAILED: a hanging rank gave exit code $rc, not 75"
  cat hang.log
  exit 1
fi
grep -q "did not complete within 3.0 s" hang.log
[ "$(cat ck/LATEST)" = "step-000000005" ]
echo "ok: rank 2 hangs in step 5: the deadline ended the job (exit code 75), LATEST = $(cat ck/LATEST)"
# A checkpoint that cannot be read: every rank reports rank 0's error and the job ends.
mkdir -p bad
echo step-000000099 >bad/LATEST
set +e
run 3 mpi --steps $steps --ckpt bad --resume --out /dev/null >bad.log 2>&1
rc=$?
set -e
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
  echo "FAILED: an unreadable checkpoint gave exit code $rc"
  exit 1
fi
[ "$(grep -c 'rank 0 could not read the checkpoint' bad.log)" -ge 1 ]
echo "ok: an unreadable checkpoint ends the job with rank 0's error (exit code $rc)"
echo "descent-mpi: all checks passed"
