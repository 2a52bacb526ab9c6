"""Minibatches and built-in datasets that need no network.

Synthetic sets (xor, moons, spirals, blobs) are drawn from a seeded generator; `digits` is
the UCI handwritten digits (1,797 8x8 images) shipped inside the package (CC BY 4.0, see
cgrad/datasets/DIGITS_LICENSE.txt), and `mnist1d` the canonical MNIST-1D split (Apache-2.0,
cgrad/datasets/MNIST1D_LICENSE.txt). Each returns numpy arrays: X float32, y int64. The
texts for character-level language models are bundled too: `names` (makemore's list, MIT)
and `tinyshakespeare` (public domain).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .tensor import from_numpy


class DataLoader:
    """Iterate over (X_batch, y_batch) minibatches: X as a cgrad Tensor, y as given (a
    numpy array of class indices or targets). Shuffled anew each pass when shuffle=True."""

    def __init__(self, X, y=None, batch_size: int = 32, shuffle: bool = False,
                 drop_last: bool = False, seed: int | None = None):
        self.X = np.ascontiguousarray(X, dtype=np.float32 if np.asarray(X).dtype != np.float64 else np.float64)
        self.y = None if y is None else np.asarray(y)
        if self.y is not None and len(self.y) != len(self.X):
            raise ValueError(f"DataLoader: X has {len(self.X)} rows but y has {len(self.y)}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = len(self.X)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.X)
        order = self.rng.permutation(n) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if self.drop_last and stop - start < self.batch_size:
                break
            if order is None:
                idx: np.ndarray | slice = slice(start, stop)
                xb = self.X[idx]
            else:  # np.take: a faster row gather than fancy indexing (X[idx])
                idx = order[start:stop]
                xb = np.take(self.X, idx, axis=0)
            yield (from_numpy(xb), None if self.y is None else self.y[idx])


def train_test_split(X, y, test_size: float = 0.25, seed: int = 0):
    """Shuffle with `seed`, then put the last ceil(test_size * n) rows aside."""
    n = len(X)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(np.ceil(n * test_size))
    tr, te = order[: n - n_test], order[n - n_test:]
    return X[tr], y[tr], X[te], y[te]


def xor(n: int = 200, noise: float = 0.1, seed: int = 0):
    """Points around the four corners of the unit square; label = x0 xor x1."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(n, 2))
    X = bits + noise * rng.standard_normal((n, 2))
    return X.astype(np.float32), (bits[:, 0] ^ bits[:, 1]).astype(np.int64)


def moons(n: int = 200, noise: float = 0.1, seed: int = 0):
    """Two interleaving half circles."""
    rng = np.random.default_rng(seed)
    n0 = n // 2
    t0, t1 = np.pi * rng.random(n0), np.pi * rng.random(n - n0)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    X += noise * rng.standard_normal(X.shape)
    y = np.concatenate([np.zeros(n0), np.ones(n - n0)]).astype(np.int64)
    return X.astype(np.float32), y


def spirals(n: int = 300, classes: int = 3, noise: float = 0.2, seed: int = 0):
    """`classes` interleaved spiral arms (the CS231n toy set)."""
    rng = np.random.default_rng(seed)
    per = n // classes
    X, y = [], []
    for c in range(classes):
        r = np.linspace(0.0, 1.0, per)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, per) + noise * rng.standard_normal(per)
        X.append(np.stack([r * np.sin(t), r * np.cos(t)], 1))
        y.append(np.full(per, c))
    return np.concatenate(X).astype(np.float32), np.concatenate(y).astype(np.int64)


def blobs(n: int = 300, centers: int = 3, std: float = 1.0, dim: int = 2, seed: int = 0):
    """Gaussian clusters around centres drawn uniformly in [-10, 10]^dim."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-10, 10, (centers, dim))
    y = rng.integers(0, centers, n)
    return (c[y] + std * rng.standard_normal((n, dim))).astype(np.float32), y.astype(np.int64)


def _bundled(name: str) -> str:
    return os.path.join(os.path.dirname(__file__), "datasets", name)


def digits(flatten: bool = True):
    """The UCI handwritten digits as (X_train, y_train, X_test, y_test), with a fixed
    split of 1,347 training and 450 test images; pixels scaled to [0, 1]."""
    path = _bundled("digits.npz")
    with np.load(path, allow_pickle=False) as f:
        images, target = f["images"], f["target"]
    X = (images.reshape(len(images), -1) if flatten else images).astype(np.float32) / 16.0
    return train_test_split(X, target.astype(np.int64), test_size=0.25, seed=0)


def mnist1d():
    """MNIST-1D (Greydanus, 2020) as (X_train, y_train, X_test, y_test): the canonical split
    of 4,000 training and 1,000 test signals of length 40 (float32, shape (n, 40)) with
    int64 labels 0..9, as the paper's models use them (for a Conv1d, add the channel:
    X[:, None, :]). Bundled, Apache-2.0: see cgrad/datasets/MNIST1D_LICENSE.txt."""
    path = _bundled("mnist1d.npz")
    with np.load(path, allow_pickle=False) as f:
        return (f["x"].astype(np.float32), f["y"].astype(np.int64), f["x_test"].astype(np.float32),
                f["y_test"].astype(np.int64))


def names() -> list[str]:
    """The 32,033 lower-case names of makemore (Karpathy; the US Social Security baby-names
    data, 2018), one string each, in the file's order: the character-level language
    model exercise's data. Bundled, MIT: see cgrad/datasets/NAMES_LICENSE.txt."""
    with open(_bundled("names.txt"), encoding="utf-8") as f:
        return f.read().split()


def tinyshakespeare() -> str:
    """Tiny Shakespeare (char-rnn; 1,115,394 characters, 65 distinct), the text nanoGPT's
    character-level GPT trains on, as one string. Bundled, public domain: see
    cgrad/datasets/TINYSHAKESPEARE_LICENSE.txt."""
    with open(_bundled("tinyshakespeare.txt"), encoding="utf-8") as f:
        return f.read()


# name -> generator(n=..., seed=...) returning (X, y)
DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {"xor": xor, "moons": moons, "spirals": spirals, "blobs": blobs}
