#!/usr/bin/env bash
# Creates the peers' Python virtual environments inside the project's ignored build
# folder, where crates/bench/run_peers.sh looks for them by default:
#
#   target/peers/venv-torch   numpy, torch==2.15.0            (TORCH_PY)
#   target/peers/venv-jax     numpy, jax, jaxlib, micrograd   (JAX_PY, MICROGRAD_PY)
#
#   crates/bench/setup_peers.sh [--dry-run] [--only torch|jax] [--python PYTHON]
#
# Versions as shared/peers/README.md pins them. torch from the package index is the CUDA
# build: about 3 GB to download and 5.4 GB installed (all unused on CPU); --only jax skips
# it. An environment whose interpreter already imports its framework is left as it is.
# --dry-run prints the commands instead of running them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="$root/target/peers"
python="${PYTHON:-python3}"
dry=0
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --only) only="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$only" in ""|torch|jax) ;; *) echo "--only takes torch or jax" >&2; exit 2 ;; esac

run() { if [ $dry = 1 ]; then echo "+ $*"; else "$@"; fi; }

# venv <name> <module to check> <packages...>
venv() {
  local name="$1" module="$2"; shift 2
  local dir="$dest/venv-$name"
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import $module" >/dev/null 2>&1; then
    echo "$dir: $module already installed" >&2
    return
  fi
  echo "creating $dir ($*)" >&2
  run mkdir -p "$dest"
  run "$python" -m venv "$dir"
  run "$dir/bin/pip" install --disable-pip-version-check "$@"
}

[ "$only" = torch ] || venv jax jax numpy jax jaxlib micrograd
[ "$only" = jax ] || venv torch torch numpy torch==2.15.0
[ $dry = 1 ] || echo "done: run crates/bench/run_peers.sh" >&2
