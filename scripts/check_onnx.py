#!/usr/bin/env python3
"""Check an ONNX file exported by `gradus export` against gradus's own predictions.

The file must pass `onnx.checker.check_model(full_check=True)`, and onnxruntime's outputs on
the rows of --inputs must match the rows of --expected within --tolerance (absolute).

Usage:
    check_onnx.py --onnx model.onnx --inputs features.csv --expected predictions.csv

--inputs contains raw features, one sample per row, as `gradus predict --input` reads them: a
header row is skipped when its first cell is not a number, and one extra last column (a
target) is dropped. --expected is the CSV that `gradus predict --raw` prints, with a header.
Exit status: 0 when the outputs match, 1 when they do not, 2 for invalid input.
"""

import argparse
import csv
import gzip
import sys

import numpy as np
import onnx
import onnxruntime


def is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_rows(path):
    """Return the rows of a CSV file (gzip when the name ends in .gz) without a header."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if rows and not is_number(rows[0][0]):
        rows = rows[1:]
    return rows


def read_inputs(path, sample_shape):
    """Read raw features shaped [rows, *sample_shape], dropping one extra last column."""
    width = int(np.prod(sample_shape))
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path} has no data rows")
    values = np.array(rows, dtype=np.float32)
    if values.shape[1] == width + 1:
        values = values[:, :width]
    if values.shape[1] != width:
        raise ValueError(
            f"{path} has {values.shape[1]} columns but the model takes {width} features"
        )
    return values.reshape((len(values), *sample_shape))


def read_expected(path, skip_columns):
    rows = read_rows(path)
    return np.array([row[skip_columns:] for row in rows], dtype=np.float64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", required=True, help="the ONNX file to check")
    parser.add_argument("--inputs", required=True, help="CSV of raw features")
    parser.add_argument("--expected", required=True, help="CSV of expected outputs")
    parser.add_argument(
        "--skip-columns",
        type=int,
        default=0,
        help="leading columns of --expected to ignore, such as the class label of "
        "`gradus predict` without --raw (default 0)",
    )
    parser.add_argument("--label", help="name to print for the model (default: the file)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-5,
        help="maximum absolute difference allowed (default 1e-5)",
    )
    args = parser.parse_args()

    model = onnx.load(args.onnx)
    onnx.checker.check_model(model, full_check=True)

    session = onnxruntime.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    sample_shape = [int(d) for d in graph_input.shape[1:]]
    try:
        x = read_inputs(args.inputs, sample_shape)
        expected = read_expected(args.expected, args.skip_columns)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    (actual,) = session.run(None, {graph_input.name: x})
    if actual.shape != expected.shape:
        print(
            f"error: onnxruntime output has shape {actual.shape} but {args.expected} "
            f"has {expected.shape}",
            file=sys.stderr,
        )
        return 2

    difference = np.abs(actual.astype(np.float64) - expected)
    worst = float(difference.max())
    status = "ok" if worst <= args.tolerance else "FAILED"
    output_name = session.get_outputs()[0].name
    print(
        f"{status}: {args.label or args.onnx}: checker passed, {len(x)} rows, output {output_name!r} "
        f"{list(actual.shape[1:])}, max abs diff {worst:.3e} (tolerance {args.tolerance:g})"
    )
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
