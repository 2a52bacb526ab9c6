"""save / load: tensors and state dicts in numpy's .npz format or in safetensors, never pickle.

An .npz file holds named arrays and a marker entry; loading uses allow_pickle=False, so it
cannot run code. A path ending in .safetensors (or format="safetensors") reads and writes
Hugging Face's safetensors format through the optional `safetensors` package: a JSON header
and raw bytes, which PyTorch reads with safetensors.torch.load_file. A save goes to a
temporary file in the same folder that is then renamed over the target, so an interrupted
save leaves the previous file intact.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from collections import OrderedDict

import numpy as np

from . import _C
from ._optional import require
from ._device import check_device
from .tensor import tensor

_MARKER = "__cgrad_format__"
_FORMAT = 1
# safetensors: a lone Tensor is stored under this key, the metadata saying it was one
# ("format": "pt" is the metadata Hugging Face's tools expect of a PyTorch checkpoint)
SAFETENSORS_TENSOR_KEY = "tensor"
_ST_META_DICT = {"format": "pt"}
_ST_META_TENSOR = {"format": "pt", "cgrad": "tensor"}
# the safetensors dtypes load reads, with their sizes in bytes: cgrad's own, and float16 and
# bfloat16, which cgrad has no type for, widened to float32 (exact, and what PyTorch's
# load_state_dict gives when it copies a half-precision checkpoint into a float32 model)
_ST_SIZES = {"F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1, "F16": 2, "BF16": 2}
_ST_WIDENED = {"F16", "BF16"}


def _as_array(value, name: str) -> np.ndarray:
    if isinstance(value, _C.TensorBase):
        return np.array(value.numpy())  # a copy: tied weights are saved once per name
    arr = np.asarray(value, order="C")  # not ascontiguousarray, which makes a 0-d array 1-d
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"save: entry '{name}' has dtype {arr.dtype}; only numbers can be saved")
    return arr


def _format_of(path: str, format: str | None, fn: str) -> str:
    if format is None:
        return "safetensors" if path.lower().endswith(".safetensors") else "npz"
    if format not in ("npz", "safetensors"):
        raise ValueError(f"{fn}: format must be 'npz', 'safetensors' or None (from the file name), not {format!r}")
    return format


def _safetensors(fn: str):
    require("safetensors.numpy", "safetensors", f"{fn} of a .safetensors file")  # the submodule save uses
    return require("safetensors", "safetensors", f"{fn} of a .safetensors file")


def _atomic_write(path: str, suffix: str, write) -> None:
    """write(tmp_path) into a temporary file of the target's folder, synced, then renamed over it."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cgrad-save-", suffix=suffix, dir=folder)
    try:
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_npz(tmp: str, arrays: dict) -> None:
    # the .npz layout written member by member: np.savez(**arrays) would take a
    # state-dict key such as 'file' for its own argument
    with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
        for name, arr in arrays.items():
            with z.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def save(obj, path, format: str | None = None) -> None:
    """Save a Tensor, or a mapping of names to tensors/arrays (a state dict).

    The format follows the file name: .safetensors writes safetensors (a lone Tensor under
    the key "tensor"), anything else .npz; format="npz" or "safetensors" overrides it."""
    path = os.fspath(path)
    fmt = _format_of(path, format, "save")
    if isinstance(obj, _C.TensorBase):
        arrays, kind = {SAFETENSORS_TENSOR_KEY: _as_array(obj, "tensor")}, 0
    elif isinstance(obj, dict):
        arrays, kind = {}, 1
        for k, v in obj.items():
            if not isinstance(k, str) or k == _MARKER:
                raise TypeError(f"save: keys must be strings (other than {_MARKER!r}), got {k!r}")
            arrays[k] = _as_array(v, k)
    else:
        raise TypeError(f"save: expected a Tensor or a dict of tensors, got {type(obj).__name__}")
    if fmt == "safetensors":
        st = _safetensors("save")
        meta = _ST_META_TENSOR if kind == 0 else _ST_META_DICT
        _atomic_write(path, ".safetensors", lambda tmp: st.numpy.save_file(arrays, tmp, metadata=meta))
        return
    arrays[_MARKER] = np.array([_FORMAT, kind], dtype=np.int64)
    _atomic_write(path, ".npz", lambda tmp: _write_npz(tmp, arrays))


def _load_safetensors(path: str, max_bytes: int):
    st = _safetensors("load")
    out: OrderedDict = OrderedDict()
    try:
        with st.safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            entries = [(k, f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()]
            for name, dt, _ in entries:  # before reading anything
                if dt not in _ST_SIZES:
                    raise TypeError(f"load: entry '{name}' in {path} has dtype {dt}, which cgrad has no type for "
                                    "(float32, float64, int64, int32, uint8, bool; float16 and bfloat16 "
                                    "are widened to float32)")
            total = sum(int(np.prod(shape, dtype=np.int64)) * _ST_SIZES[dt] for _, dt, shape in entries)
            if total > max_bytes:
                raise ValueError(f"load: {path} holds more than max_bytes={max_bytes}")
            bf16 = _Bf16Reader(path) if any(dt == "BF16" for _, dt, _ in entries) else None
            for name, dt, shape in entries:
                if bf16 is not None and dt == "BF16":  # numpy has no bfloat16
                    arr = bf16.read(name, shape)
                else:
                    arr = f.get_tensor(name)
                if dt in _ST_WIDENED:
                    arr = arr.astype(np.float32)
                out[name] = tensor(arr)
    except (TypeError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as e:  # the package's SafetensorError, and OSError for short reads
        raise ValueError(f"load: {path} is not a safetensors file, or is truncated or corrupted ({e})") from None
    if meta.get("cgrad") == "tensor":
        if list(out) != [SAFETENSORS_TENSOR_KEY]:
            raise ValueError(f"load: {path} is corrupted (a tensor file with entries {list(out)})")
        return out[SAFETENSORS_TENSOR_KEY]
    return out


class _Bf16Reader:
    """bfloat16 entries as float32 (the upper half of a float32's bits), from the byte
    ranges the header gives; the header is read once (the safetensors layout: an 8-byte
    little-endian header length, the JSON header, then the data)."""

    def __init__(self, path: str):
        import json
        self.path = path
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            self.header, self.base = json.loads(f.read(n)), 8 + n

    def read(self, name: str, shape: tuple) -> np.ndarray:
        start, end = self.header[name]["data_offsets"]
        with open(self.path, "rb") as f:
            f.seek(self.base + start)
            raw = np.frombuffer(f.read(end - start), dtype="<u2")
        if raw.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"load: {self.path} is truncated (entry '{name}')")
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(shape)


def load(path, map_location=None, weights_only: bool = True, max_bytes: int = 1 << 34,
         format: str | None = None):
    """Load what save wrote: a Tensor, or an OrderedDict of name -> Tensor (integer and
    bool entries too, in their dtype). A .safetensors file (any writer's: safetensors.torch
    too) loads as a state dict; its float16 and bfloat16 entries become float32.

    Raises ValueError for a file that is not a cgrad save, truncated or corrupted, and
    for entries larger than max_bytes in total. PyTorch's map_location (the CPU) and
    weights_only are accepted: loading never unpickles, so it is always weights only."""
    check_device(map_location if not callable(map_location) else None)
    path = os.fspath(path)
    if _format_of(path, format, "load") == "safetensors":
        return _load_safetensors(path, max_bytes)
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
