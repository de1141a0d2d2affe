"""Train a benchmark model in PyTorch for one epoch and print one JSON line.

`gradus bench mlp` and `gradus bench cnn` run this script once per configuration through
`bench_torch.sh`, on the data files they write, so that both frameworks see the same samples
in the same order:

- `x.f32`: samples x features, little-endian float32, row-major;
- `y.u8`: one class label per sample;
- `order.u32`: the sample order of the epoch, little-endian uint32.

The warm-up steps take their batches from the start of the same order and are not timed.
The printed line contains samples_per_second, seconds, peak_rss_bytes and final_loss.
"""

import argparse
import json
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder with x.f32, y.u8, order.u32")
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--features", type=int, required=True, help="features per sample")
    parser.add_argument("--hidden", default="256,128", help="hidden layer sizes of the MLP")
    parser.add_argument("--classes", type=int, default=10, help="output classes")
    parser.add_argument("--batch", type=int, required=True, help="samples per batch")
    parser.add_argument("--method", choices=["sgd", "adam"], required=True)
    parser.add_argument("--lr", type=float, required=True, help="learning rate")
    parser.add_argument("--threads", type=int, required=True, help="intra-op threads")
    parser.add_argument("--warmup-steps", type=int, default=20, help="untimed steps first")
    parser.add_argument("--seed", type=int, default=1, help="initialisation seed")
    return parser.parse_args()


def build_cnn(classes):
    """Build gradus's conv:16x3x3:p1,relu,maxpool:2,conv:32x3x3:p1,relu,maxpool:2,flatten,
    dense:128,relu with a dense output layer, for 1 x 28 x 28 images."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 7 * 7, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, classes),
    )


def build_mlp(features, hidden, classes):
    layers = []
    width = features
    for units in hidden:
        layers += [torch.nn.Linear(width, units), torch.nn.ReLU()]
        width = units
    layers.append(torch.nn.Linear(width, classes))
    return torch.nn.Sequential(*layers)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    # gradus flushes denormals to zero on every training thread, so PyTorch does too.
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)

    x = torch.from_numpy(np.fromfile(f"{args.data_dir}/x.f32", dtype="<f4"))
    x = x.view(-1, args.features)
    if args.model == "cnn":
        side = int(round(args.features**0.5))
        x = x.view(-1, 1, side, side)
    y = torch.from_numpy(np.fromfile(f"{args.data_dir}/y.u8", dtype=np.uint8).astype(np.int64))
    order = np.fromfile(f"{args.data_dir}/order.u32", dtype="<u4").astype(np.int64)
    order = torch.from_numpy(order)

    hidden = [int(units) for units in args.hidden.split(",") if units]
    if args.model == "cnn":
        model = build_cnn(args.classes)
    else:
        model = build_mlp(args.features, hidden, args.classes)
    if args.method == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    starts = list(range(0, len(order), args.batch))

    def step(start):
        index = order[start : start + args.batch]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[index]), y[index])
        loss.backward()
        optimizer.step()
        return loss.item()

    for i in range(args.warmup_steps):
        step(starts[i % len(starts)])

    began = time.perf_counter()
    loss = float("nan")
    for start in starts:
        loss = step(start)
    seconds = time.perf_counter() - began

    # ru_maxrss is in KiB on Linux.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "samples_per_second": len(order) / seconds,
                "seconds": seconds,
                "peak_rss_bytes": peak_rss,
                "final_loss": loss,
                "torch_version": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
