#!/usr/bin/env bash
# Build the runtime environments (.venv/pipeline, .venv/serving, .venv/drift) and the tools env
# (.venv/tools, checkers such as checkov) from their locks.
#
# Idempotent and quick when nothing changed: each venv keeps a stamp with the sha256 of its lock,
# the shared constraints and pyproject.toml, and is rebuilt only when that digest changes.
# Usage: scripts/bootstrap.sh [pipeline|serving|drift ...]   (default: all three)
# `bench` (BentoML, for bench/bench_serving.py) is built only when named: `make bench-env`;
# MAINSAIL_BENCH_VENV=DIR puts it in DIR instead of .venv/bench (a checkout whose .venv is
# shared with others).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "bootstrap: Python 3.11 not found; installing it from Debian's packages" >&2
  apt-get update -qq && apt-get install -y -qq python3.11 python3.11-venv >/dev/null
  PY=python3.11
fi
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3.11-venv >/dev/null
fi

# uv installs a fully pinned lock in seconds (pip takes minutes); it lives in its own small venv.
UV_VERSION=0.13.9
uv=.venv/.uv/bin/uv
if ! [ -x "$uv" ] || [ "$("$uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  rm -rf .venv/.uv
  "$PY" -m venv .venv/.uv
  .venv/.uv/bin/python -m pip install -q "uv==$UV_VERSION" 2>&1 | grep -v "is ignored" || true
fi
[ "${1:-}" = "--uv-only" ] && exit 0
# Bytecode compiled at install, as pip does (uv does not by default): where the environment
# sets PYTHONDONTWRITEBYTECODE, as this project's CI machines do, nothing would ever be cached
# and every process would compile each module it imports again (`import feast`: 5.9 s without,
# 3.9 s with; every MLServer, Ray worker and CLI process of the tests likewise).
export UV_COMPILE_BYTECODE=1

# torch: the locks pin PyPI's build, which is the CUDA one (torch plus ~3 GB of nvidia-* and
# triton wheels): it installs everywhere, and a GPU node pool needs it anyway. Where PyTorch's
# own index answers, the CPU build of the same version is installed instead and the CUDA-only
# packages are left out. MAINSAIL_TORCH=cuda|cpu forces a variant; only the pipeline env has torch.
torch_variant() {
  case "${MAINSAIL_TORCH:-auto}" in
    cpu|cuda) echo "$MAINSAIL_TORCH" ;;
    auto)
      if curl -fsS -m 5 -o /dev/null https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null; then
        echo cpu
      else
        echo cuda
      fi ;;
    *) echo "bootstrap: MAINSAIL_TORCH must be auto, cpu or cuda" >&2; exit 2 ;;
  esac
}
# The CUDA-only distributions of PyPI's torch (left out of the CPU variant).
cuda_only='^(nvidia-|cuda-|triton==)'

envs=("$@")
if [ ${#envs[@]} -eq 0 ]; then
  envs=(pipeline serving drift)
  # tools: command-line checkers with pins of their own (checkov) that cannot share the pipeline env
  [ -f requirements/tools.lock ] && envs+=(tools)
  # clients: independent V2 clients (kserve) for the interop tests, pins of their own
  [ -f requirements/clients.lock ] && envs+=(clients)
fi

for env in "${envs[@]}"; do
  lock="requirements/$env.lock"
  [ -f "$lock" ] || { echo "bootstrap: no $lock (run 'make lock')" >&2; exit 2; }
  venv=".venv/$env"
  [ "$env" = bench ] && venv="${MAINSAIL_BENCH_VENV:-$venv}"
  variant=none
  grep -q '^torch==' "$lock" && variant=$(torch_variant)
  digest=$(cat "$lock" requirements/constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  digest="$digest torch=$variant bytecode=1"
  if [ -f "$venv/.mainsail-stamp" ] && [ "$(cat "$venv/.mainsail-stamp")" = "$digest" ]; then
    echo "env $env: up to date"
    continue
  fi
  note=""; [ "$variant" = none ] || note=" (torch: $variant build)"
  echo "env $env: installing $(grep -c "==" "$lock") pinned packages$note"
  rm -rf "$venv"
  # --seed gives the runtime envs pip (handy for debugging); the tools env stays exactly its lock.
  seed=(--seed); case "$env" in tools|clients|bench) seed=() ;; esac
  "$uv" venv -q "${seed[@]}" -p "$PY" "$venv"
  # --no-deps: the lock already lists the whole resolved set, so no resolver pass is needed.
  if [ "$variant" = cpu ]; then
    torch_pin=$(grep '^torch==' "$lock")
    grep -vE "$cuda_only|^torch==" "$lock" > "$venv/.lock-cpu"
    VIRTUAL_ENV="$venv" "$uv" pip install -q --no-deps -r "$venv/.lock-cpu"
    VIRTUAL_ENV="$venv" "$uv" pip install -q --no-deps \
      --index-url https://download.pytorch.org/whl/cpu "${torch_pin}+cpu"
  else
    VIRTUAL_ENV="$venv" "$uv" pip install -q --no-deps -r "$lock"
  fi
  # The runtime envs get the library itself (editable); tools, clients and bench hold only
  # third-party packages.
  if [ "$env" != tools ] && [ "$env" != clients ] && [ "$env" != bench ]; then
    VIRTUAL_ENV="$venv" "$uv" pip install -q --no-deps --no-build-isolation -e .
  fi
  VIRTUAL_ENV="$venv" "$uv" pip check >/dev/null 2>&1 || {
    echo "bootstrap: dependency check failed in $venv:" >&2; VIRTUAL_ENV="$venv" "$uv" pip check >&2 || true; exit 1; }
  echo "$digest" > "$venv/.mainsail-stamp"
  echo "env $env: ready"
done
# The project's own modules too (the runtime envs install it editable): a second or so, and a
# stale file is never used (Python compares it with its source's mtime).
"$PY" -m compileall -q src >/dev/null
