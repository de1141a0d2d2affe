#!/usr/bin/env bash
# Deep autoencoder benchmark: trains 784-256-64-16-64-256-784 on mnist-10k with Hessian-free,
# Adam and SGD for the same training time each, one after the other, and prints each one's
# training reconstruction error (mean squared error per pixel, pixels scaled to [0, 1]).
#
# Usage: scripts/bench_autoencoder.sh [SECONDS] [ACTIVATION]   (defaults: 60, sigmoid)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
activation="${2:-sigmoid}"
data="idx:../shared/data/mnist-10k"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cargo build --release --quiet
printf '%-14s %8s %12s %26s\n' method epochs seconds "train reconstruction error"
for method in hessian-free adam sgd; do
    extra=()
    if [ "$method" = hessian-free ]; then
        # Martens' sparse initialisation, one step per minibatch of 1000 images with
        # Gauss-Newton products on 250 of them. Adam and SGD keep their defaults.
        extra=(--init sparse --set minibatch=true --batch-size 1000
            --set curvature_fraction=0.25 --set max_krylov_iterations=50 --set damping=0.01)
    fi
    target/release/gradus train --data "$data" --task autoencoder --layers 256,64,16 \
        --activation "$activation" --method "$method" "${extra[@]}" --epochs 1000000 \
        --patience 0 --time-limit "$seconds" --out "$out/$method" >/dev/null
    python3 - "$out/$method/summary.json" "$method" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<14} {s['epochs']:>8} {s['wall_seconds']:>12.1f} {s['train_loss']:>26.5f}")
PY
done
