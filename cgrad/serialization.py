"""save / load: tensors and state dicts in numpy's .npz format, never pickle.

A file holds named float arrays and a marker entry; loading uses allow_pickle=False, so
it cannot run code. A save goes to a temporary file in the same folder that is then
renamed over the target, so an interrupted save leaves the previous file intact.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from collections import OrderedDict

import numpy as np

from . import _C
from ._device import check_device
from .tensor import tensor

_MARKER = "__cgrad_format__"
_FORMAT = 1


def _as_array(value, name: str) -> np.ndarray:
    if isinstance(value, _C.TensorBase):
        return np.array(value.numpy())
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"save: entry '{name}' has dtype {arr.dtype}; only numbers can be saved")
    return arr


def save(obj, path) -> None:
    """Save a Tensor, or a mapping of names to tensors/arrays (a state dict)."""
    if isinstance(obj, _C.TensorBase):
        arrays, kind = {"tensor": _as_array(obj, "tensor")}, 0
    elif isinstance(obj, dict):
        arrays, kind = {}, 1
        for k, v in obj.items():
            if not isinstance(k, str) or k == _MARKER:
                raise TypeError(f"save: keys must be strings (other than {_MARKER!r}), got {k!r}")
            arrays[k] = _as_array(v, k)
    else:
        raise TypeError(f"save: expected a Tensor or a dict of tensors, got {type(obj).__name__}")
    arrays[_MARKER] = np.array([_FORMAT, kind], dtype=np.int64)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cgrad-save-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            # the .npz layout written member by member: np.savez(**arrays) would take a
            # state-dict key such as 'file' for its own argument
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
                for name, arr in arrays.items():
                    with z.open(name + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path, map_location=None, weights_only: bool = True, max_bytes: int = 1 << 34):
    """Load what save wrote: a Tensor, or an OrderedDict of name -> Tensor (integer and
    bool entries too, in their dtype).

    Raises ValueError for a file that is not a cgrad save, truncated or corrupted, and
    for entries larger than max_bytes in total. PyTorch's map_location (the CPU) and
    weights_only are accepted: loading never unpickles, so it is always weights only."""
    check_device(map_location if not callable(map_location) else None)
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.files)
            if _MARKER not in names:
                raise ValueError(f"load: {path} is not a cgrad file (no {_MARKER} entry)")
            marker = f[_MARKER]
            if marker.shape != (2,) or int(marker[0]) != _FORMAT:
                raise ValueError(f"load: {path} has an unknown cgrad format {marker.tolist()}")
            total = 0
            out = OrderedDict()
            for name in names:
                if name == _MARKER:
                    continue
                arr = f[name]
                total += arr.nbytes
                if total > max_bytes:
                    raise ValueError(f"load: {path} holds more than max_bytes={max_bytes}")
                if arr.dtype.kind not in "fiub":
                    raise ValueError(f"load: entry '{name}' in {path} has dtype {arr.dtype}")
                out[name] = tensor(arr)  # every dtype is a tensor now, as torch.load gives
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"load: {path} is truncated or corrupted ({e})") from None
    if int(marker[1]) == 0:
        if list(out) != ["tensor"]:
            raise ValueError(f"load: {path} is corrupted (a tensor file with entries {list(out)})")
        return out["tensor"]
    return out
