#!/usr/bin/env bash
# Deep autoencoder benchmark: trains 784-256-64-16-64-256-784 on mnist-10k with Hessian-free,
# Adam and SGD for the same training time each, one after the other, and prints each one's
# training reconstruction error: the mean squared error per pixel (pixels scaled to [0, 1])
# on the whole training part, with each run's final parameters.
#
# Usage: scripts/bench_autoencoder.sh [SECONDS] [ACTIVATION] [LOSS] [SEED]
#   (defaults: 60, sigmoid, bce, 0). SEED fixes the data split and the initialisation.
#
# All three methods train with the same loss. The default is binary cross-entropy on sigmoid
# outputs, the loss Martens (2010) trained his autoencoders with, and all three report the
# squared error. Adam and SGD keep their library defaults (learning rates 1e-3 and 0.01,
# batch size 32, initialisation). The load average before and after goes to standard error, because the
# methods get less of the processor on a busy machine.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
activation="${2:-sigmoid}"
loss="${3:-bce}"
seed="${4:-0}"
data="idx:../shared/data/mnist-10k"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cargo build --release --quiet
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf '%-14s %8s %12s %26s\n' method epochs seconds "train reconstruction error"
for method in hessian-free adam sgd; do
    extra=()
    if [ "$method" = hessian-free ]; then
        # Martens' sparse initialisation and diagonal preconditioner, one step per minibatch
        # of 1000 images with Gauss-Newton products on 250 of them.
        extra=(--init sparse --set minibatch=true --batch-size 1000
            --set curvature_fraction=0.25 --set max_krylov_iterations=25 --set damping=0.01
            --set preconditioner=true)
    fi
    target/release/gradus train --data "$data" --task autoencoder --layers 256,64,16 \
        --activation "$activation" --loss "$loss" --seed "$seed" --method "$method" \
        "${extra[@]}" --epochs 1000000 --patience 0 --time-limit "$seconds" \
        --out "$out/$method" >/dev/null
    python3 - "$out/$method/summary.json" "$method" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
error = s["final_train_reconstruction_error"]
print(f"{sys.argv[2]:<14} {s['epochs']:>8} {s['wall_seconds']:>12.1f} {error:>26.5f}")
PY
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
