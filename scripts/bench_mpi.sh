#!/usr/bin/env bash
# Data-parallel benchmark: trains the 784-256-128-10 network on Fashion-MNIST (batch 32
# unless BATCH is given) as two MPI ranks of one thread each, then as one process with two
# threads. It prints both throughputs, their ratio and whether the epoch losses are equal
# (both split each batch into the same two groups and add them in the same order).
# Throughput is training samples per second of step time (summary.json's
# samples_per_second), so data loading and evaluation do not count. The two runs alternate
# REPEATS times, and the table shows the fastest run of each, which is the least disturbed
# by other load on the machine. The median ratio of the runs made one after the other
# follows. It is the steadier figure, because the speed of a shared virtual machine can
# change by a factor of two for minutes at a time.
#
# Usage: scripts/bench_mpi.sh [METHOD] [EPOCHS] [REPEATS] [BATCH]   (defaults: adam, 3, 3, 32)
# Needs mpirun (Debian: openmpi-bin, libopenmpi-dev) and libclang-dev for the build.
set -euo pipefail
cd "$(dirname "$0")/.."

method="${1:-adam}"
epochs="${2:-3}"
repeats="${3:-3}"
batch="${4:-32}"
data="idx:../shared/data/fashion-mnist"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cargo build --release --quiet --features mpi
gradus=target/release/gradus
train=(train --data "$data" --layers 256,128 --epochs "$epochs" --method "$method"
       --batch-size "$batch")

echo "method $method, batch $batch, $epochs epochs, $repeats repeats"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for repeat in $(seq "$repeats"); do
    mpirun -np 2 --oversubscribe --allow-run-as-root "$gradus" "${train[@]}" \
        --out "$out/ranks-$repeat" >/dev/null
    "$gradus" "${train[@]}" --threads 2 --out "$out/single-$repeat" >/dev/null
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out" "$repeats" <<'PY'
import json, sys

def run(folder):
    summary = json.load(open(f"{folder}/summary.json"))
    with open(f"{folder}/metrics.jsonl") as lines:
        losses = [json.loads(line)["train_loss"] for line in lines]
    return summary, losses

def fastest(kind):
    runs = [run(f"{sys.argv[1]}/{kind}-{r}") for r in range(1, int(sys.argv[2]) + 1)]
    print(f"{kind} samples/s per repeat:",
          ", ".join(f"{s['samples_per_second']:.0f}" for s, _ in runs))
    return max(runs, key=lambda r: r[0]["samples_per_second"])

(ranks, ranks_losses), (single, single_losses) = fastest("ranks"), fastest("single")
print(f"{'run':<22} {'samples/s':>10} {'wall s':>8} {'test loss':>10}")
for name, s in [("2 ranks x 1 thread", ranks), ("1 process x 2 threads", single)]:
    print(f"{name:<22} {s['samples_per_second']:>10.0f} {s['wall_seconds']:>8.1f} "
          f"{s['test_loss']:>10.5f}")
ratio = ranks["samples_per_second"] / single["samples_per_second"]
print(f"throughput ratio (2 ranks / 1 process): {ratio:.3f}")
pairs = sorted(
    run(f"{sys.argv[1]}/ranks-{r}")[0]["samples_per_second"]
    / run(f"{sys.argv[1]}/single-{r}")[0]["samples_per_second"]
    for r in range(1, int(sys.argv[2]) + 1))
middle = len(pairs) // 2
median = pairs[middle] if len(pairs) % 2 else (pairs[middle - 1] + pairs[middle]) / 2
print(f"median ratio of the runs made one after the other: {median:.3f}")
worst = max(abs(a - b) / abs(b) for a, b in zip(ranks_losses, single_losses))
same = ranks_losses == single_losses
print("epoch training losses:", ", ".join(f"{a:.6f}/{b:.6f}"
                                           for a, b in zip(ranks_losses, single_losses)))
print(f"epoch losses equal: {'yes' if same else 'no'} "
      f"(largest relative difference {worst:.2e})")
PY
