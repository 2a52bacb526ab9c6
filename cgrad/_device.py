"""Devices, as PyTorch names them. cgrad runs on the CPU, so `device("cpu")` (or "cpu:0")
is the only one: programs written for `torch.device("cuda" if torch.cuda.is_available()
else "cpu")` pick it, and asking for another device raises at once with a clear message."""
from __future__ import annotations


class device:
    """`cgrad.device("cpu")`; any other device type raises RuntimeError."""

    __slots__ = ("type", "index")
    type: str
    index: int | None

    def __init__(self, type: "str | device" = "cpu", index: int | None = None):
        name = type.type if isinstance(type, device) else str(type)
        kind, _, idx = name.partition(":")
        if kind != "cpu":
            raise RuntimeError(f"device: cgrad runs on the CPU only, so device {name!r} is not available "
                               f"(cgrad.cuda.is_available() is False); use 'cpu'")
        if idx and not idx.isdigit():
            raise RuntimeError(f"device: invalid device string {name!r}")
        self.type = "cpu"
        self.index = int(idx) if idx else index

    def __repr__(self):
        return "device(type='cpu')" if self.index is None else f"device(type='cpu', index={self.index})"

    def __str__(self):
        return "cpu" if self.index is None else f"cpu:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except RuntimeError:
                return False
        return isinstance(other, device) and other.index == self.index

    def __hash__(self):
        return hash(("cpu", self.index))


CPU = device("cpu")


def check_device(dev) -> None:
    """Refuse any device but the CPU (None means the default, the CPU)."""
    if dev is not None:
        device(dev)
