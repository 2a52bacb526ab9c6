"""Convolution layers: Conv1d, Conv2d (PyTorch's arguments, weight layout and initialisation)."""
from __future__ import annotations

import math

from ..tensor import _generator, _resolve_dtype, tensor
from . import functional as F
from .modules import Module, Parameter

__all__ = ["Conv1d", "Conv2d"]


class _ConvNd(Module):
    _n: int
    _fn = staticmethod(F.conv2d)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"{name}: padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', "
                             f"not {padding_mode!r}")
        n = self._n
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = F._ntuple(kernel_size, n, "kernel_size", name)
        self.stride = F._ntuple(stride, n, "stride", name)
        self.dilation = F._ntuple(dilation, n, "dilation", name)
        self.padding = padding if isinstance(padding, str) else F._ntuple(padding, n, "padding", name)
        if isinstance(padding, str):
            F._conv_padding(padding, self.kernel_size, self.stride, self.dilation, name)  # checks it now
        self.padding_mode = padding_mode
        # PyTorch's default: kaiming_uniform_(a=sqrt(5)) for the weight, which is U(+-1/sqrt(fan_in)),
        # and the bias U(+-1/sqrt(fan_in))
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        rng, dt = _generator(), _resolve_dtype(dtype)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(tensor(rng.uniform(-bound, bound, shape), dtype=dt))
        self.bias = Parameter(tensor(rng.uniform(-bound, bound, out_channels), dtype=dt)) if bias else None

    def forward(self, x):
        if self.padding_mode == "zeros":
            return type(self)._fn(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        # as PyTorch: pad the input in the mode, then convolve without padding
        pads = F._conv_padding(self.padding, self.kernel_size, self.stride, self.dilation, type(self).__name__)
        x = F.pad(x, [p for lo_hi in reversed(pads) for p in lo_hi], mode=self.padding_mode)
        return type(self)._fn(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L): weight (out_channels, in_channels/groups, kernel_size)."""
    _n = 1
    _fn = staticmethod(F.conv1d)


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W): weight (out_channels, in_channels/groups, kH, kW)."""
    _n = 2
    _fn = staticmethod(F.conv2d)
