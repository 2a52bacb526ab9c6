"""PyTorch's data API: Dataset, TensorDataset, Subset, random_split and a DataLoader over
any dataset (batch_size, shuffle, drop_last, collate_fn, generator).

A TensorDataset is batched with one row gather per tensor instead of a __getitem__ per
sample; other datasets go through collate_fn, which by default stacks the samples' fields
into tensors, as PyTorch's default_collate does. `cgrad.data.DataLoader` stays the fast
path straight from numpy arrays.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import numpy as np

from .. import _C
from ..tensor import Generator, Tensor, _generator, stack, tensor


class Dataset:
    """Subclass and define __getitem__(i) (and __len__)."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} does not define __getitem__")


class TensorDataset(Dataset):
    """Samples are the i-th rows of each tensor (all of the same length)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else tensor(t) for t in tensors)
        n = len(self.tensors[0])
        if any(len(t) != n for t in self.tensors):
            raise ValueError(f"TensorDataset: the tensors have different lengths {[len(t) for t in self.tensors]}")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])


class Subset(Dataset):
    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset, lengths, generator: Generator | None = None) -> list[Subset]:
    """Split into non-overlapping random subsets: lengths are counts, or fractions that sum
    to 1 (the remainder goes round-robin from the first subset, as in PyTorch)."""
    n = len(dataset)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1) < 1e-9:
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        counts = [int(x) for x in lengths]
    if sum(counts) != n:
        raise ValueError(f"random_split: the lengths {list(lengths)} do not add up to the dataset's {n}")
    order = _generator(generator).permutation(n)
    bounds = np.cumsum([0] + counts)
    return [Subset(dataset, order[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:])]


def default_collate(samples: list) -> Any:
    """Tensors are stacked, numbers and arrays become a tensor, tuples and dicts are
    collated field by field."""
    first = samples[0]
    if isinstance(first, _C.TensorBase):
        return stack(samples)
    if isinstance(first, (numbers.Number, np.ndarray, np.number)):
        return tensor(np.stack([np.asarray(s) for s in samples]))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, (tuple, list)):
        fields = [default_collate(list(field)) for field in zip(*samples)]
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(f"default_collate: cannot collate samples of type {type(first).__name__}")


class DataLoader:
    """Minibatches of a dataset, as torch.utils.data.DataLoader (one process)."""

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool = False, drop_last: bool = False,
                 collate_fn: Callable | None = None, generator: Generator | None = None, **kwargs):
        unknown = set(kwargs) - {"num_workers", "pin_memory", "persistent_workers", "prefetch_factor"}
        if unknown:
            raise TypeError(f"DataLoader: unexpected arguments {sorted(unknown)}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.collate_fn, self.generator = collate_fn, generator

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = _generator(self.generator).permutation(n) if self.shuffle else np.arange(n)
        if self.batch_size is None:  # samples one by one, not batched
            for i in order:
                yield self.dataset[int(i)]
            return
        fast = isinstance(self.dataset, TensorDataset) and self.collate_fn is None
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            if fast:  # one gather per tensor
                yield [t[idx] for t in self.dataset.tensors]
            else:
                yield (self.collate_fn or default_collate)([self.dataset[int(i)] for i in idx])


__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader", "default_collate", "Generator"]
