#!/usr/bin/env bash
# Trains small models, exports each to ONNX and checks the files with scripts/check_onnx.py:
# onnx.checker must pass and onnxruntime must match `gradus predict` within 1e-5 (absolute)
# on every row of the inputs.
#
# Usage: scripts/onnx_roundtrip.sh [PYTHON]
#   PYTHON  an interpreter with onnx, onnxruntime and numpy installed (default: python3)
#
# Reads the digits data from ../shared/data. Prints one line per exported model and a closing
# `onnx: N passed, N failed` line. Exits 1 when any model fails the comparison, and with the
# failing command's status when a step before it (training, export, predict) fails.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${1:-python3}
digits=../shared/data/digits/digits.csv.gz
if [ ! -f "$digits" ]; then
    echo "error: $digits is missing; the roundtrip checks run on the digits data set" >&2
    exit 2
fi
if ! "$python" -c 'import numpy, onnx, onnxruntime' 2>/dev/null; then
    echo "error: $python cannot import numpy, onnx and onnxruntime; pass a venv's python" >&2
    exit 2
fi

cargo build --release --quiet
gradus=target/release/gradus
work=$(mktemp -d "${TMPDIR:-/tmp}/gradus-onnx.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A smooth regression target of three features with values of order 1, so that 1e-5 is far
# above the f32 rounding of the outputs.
awk 'BEGIN {
    print "a,b,c,y"
    for (i = 0; i < 600; i++) {
        a = sin(i * 0.37) * 2; b = cos(i * 0.11); c = (i % 17) / 4
        printf "%.6f,%.6f,%.6f,%.6f\n", a, b, c, 0.8 * a - 1.5 * b * b + 0.3 * a * c
    }
}' > "$work/curve.csv"

# Trains a model into $work/NAME with the given `gradus train` options.
train() {
    local name=$1
    shift
    "$gradus" train --out "$work/$name" --method sgd --lr 0.05 --seed 1 "$@" > /dev/null
}

passed=0
failed=0

# check LABEL RUN INPUTS OUTPUT [EXPORT OPTIONS...]: exports run RUN and compares onnxruntime
# on INPUTS with `gradus predict`. OUTPUT is `raw` for `predict --raw`, or `probabilities` for
# the probability columns of plain `predict` (its first column is the class label).
check() {
    local label=$1 run=$work/$2 inputs=$3 output=$4
    shift 4
    local onnx=$work/$label.onnx expected=$work/$label.expected.csv skip=0
    "$gradus" export --model "$run" --format onnx --out "$onnx" "$@" > /dev/null
    if [ "$output" = raw ]; then
        "$gradus" predict --model "$run" --input "$inputs" --raw > "$expected"
    else
        "$gradus" predict --model "$run" --input "$inputs" > "$expected"
        skip=1
    fi
    if "$python" scripts/check_onnx.py --label "$label" --onnx "$onnx" --inputs "$inputs" \
        --expected "$expected" --skip-columns "$skip"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
}

train digits --epochs 5
check digits-mlp digits "$digits" raw
check digits-mlp-softmax digits "$digits" probabilities --softmax
check digits-mlp-opset13 digits "$digits" raw --opset 13

for activation in leaky-relu tanh sigmoid softplus gelu; do
    train "$activation" --layers 32,16 --activation "$activation" --dropout 0.1 --epochs 2
    check "digits-$activation" "$activation" "$digits" raw
done
# Operator sets before 20 have no Gelu operator, so GELU is built from Erf there.
check digits-gelu-opset13 gelu "$digits" raw --opset 13
check digits-gelu-opset25 gelu "$digits" raw --opset 25

train curve --data "csv:$work/curve.csv" --task regress --layers 16,16 --epochs 20
check curve-regression curve "$work/curve.csv" raw

train autoencoder --task autoencoder --layers 16 --loss bce --epochs 2
check digits-autoencoder-bce autoencoder "$digits" raw

# Digits are 1x8x8 images, so the graph input is [N, 1, 8, 8]. The second model covers a
# strided, unpadded convolution, overlapping max-pool windows and batch normalisation of flat
# features after a dense layer.
train cnn --model "conv:8x3x3:p1,relu,maxpool:2,batchnorm,avgpool:2,flatten,dense:32,relu" \
    --epochs 3
check digits-cnn cnn "$digits" raw
check digits-cnn-opset13 cnn "$digits" raw --opset 13
train cnn-strided --model "conv:6x3x3:s2,relu,maxpool:2:s1,flatten,dense:16,batchnorm,relu" \
    --epochs 3
check digits-cnn-strided cnn-strided "$digits" raw

echo "onnx: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
