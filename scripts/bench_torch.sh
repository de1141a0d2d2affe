#!/usr/bin/env bash
# Runs bench_torch.py in a virtual environment outside the repository and creates that
# environment (torch and numpy from PyPI, several GB) on first use.
# GRADUS_BENCH_VENV sets its folder (default: ~/.cache/gradus/bench-venv).
set -euo pipefail

venv="${GRADUS_BENCH_VENV:-$HOME/.cache/gradus/bench-venv}"
ready="$venv/.gradus-ready"

if [ ! -f "$ready" ]; then
  echo "creating the PyTorch benchmark environment in $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch numpy >&2
  touch "$ready"
fi

exec "$venv/bin/python" "$(dirname "$0")/bench_torch.py" "$@"
