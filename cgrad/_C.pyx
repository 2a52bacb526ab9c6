# cython: language_level=3, embedsignature=True
"""The binding between the C core (csrc/) and the Python facade.

Thin by design (docs/architecture.md, "The three layers"): `TensorBase` holds a
`cg_tensor *`; each op checks its Python arguments once, calls one C function and wraps
the result. C status codes become Python exceptions in `_raise`. No math and no
per-element loops here. It imports nothing from the facade (cgrad._state is below it).

One extension module, in parts by concern (textual includes, as msgpack does):
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.object cimport PyTypeObject
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcpy, memset

from ._cg cimport *

import numpy as np
import weakref

from . import _state

__all__ = ["TensorBase"]

include "_C_tensor.pxi"   # errors, wrapping C results, numpy <-> core, grad mode, TensorBase
include "_C_ops.pxi"      # the op entry points, BLAS and threads, the op registry's table
include "_C_optim.pxi"    # ParamSet: every parameter updated in one C call
include "_C_replay.pxi"   # cgrad.compile: Program, capture, copying inputs in
include "_C_debug.pxi"    # anomaly mode, graph drawing, memory counters, profiler events
include "_C_function.pxi" # autograd.Function, tensor hooks, autograd.grad: the sweep's calls into Python
include "_C_conv.pxi"     # convolution: conv forward and its two adjoints
include "_C_pool.pxi"     # pooling: max, average, adaptive
include "_C_norm.pxi"     # normalisation: batch norm
include "_C_embedding.pxi" # embedding and the sequence losses
include "_C_rnn.pxi"      # recurrent layers: RNN, GRU, LSTM over whole sequences
include "_C_attention.pxi" # scaled dot-product attention
