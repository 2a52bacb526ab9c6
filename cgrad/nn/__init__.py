"""Layers, losses and their functional forms (cgrad.nn.functional), initialisers (nn.init)."""
from . import functional, init
from .modules import (ACTIVATIONS, ELU, GELU, MLP, SELU, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss,
                      Dropout, Flatten, Hardtanh, HuberLoss, Identity, L1Loss, LeakyReLU, Linear, Mish,
                      Module, ModuleDict, ModuleList, MSELoss, NLLLoss, Parameter, ParameterList, ReLU,
                      Sequential, Sigmoid, SiLU, Softmax, Softsign, Tanh, Softplus, LogSigmoid, LogSoftmax,
                      Unflatten, SmoothL1Loss, ReLU6, Hardsigmoid, Hardswish, CELU, Threshold, PReLU, GLU,
                      Softmin, Tanhshrink, Softshrink, Hardshrink)
from .utils import clip_grad_norm_
from . import conv, pooling, normalization, sparse, rnn, attention
from .conv import *  # noqa: F401,F403  (each names its layers in __all__)
from .pooling import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403

__all__ = ["functional", "init", "Module", "ModuleList", "ModuleDict", "ParameterList", "Parameter",
           "Linear", "Sequential", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "SiLU", "GELU",
           "ELU", "SELU", "Mish", "Softsign", "Hardtanh", "Dropout", "Flatten", "Identity", "MLP",
           "ACTIVATIONS", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
           "NLLLoss", "HuberLoss", "clip_grad_norm_", "Softplus", "LogSigmoid", "LogSoftmax", "Unflatten",
           "SmoothL1Loss", "ReLU6", "Hardsigmoid", "Hardswish", "CELU", "Threshold", "PReLU", "GLU", "Softmin",
           "Tanhshrink", "Softshrink", "Hardshrink"] + (conv.__all__ + pooling.__all__ + normalization.__all__
           + sparse.__all__ + rnn.__all__ + attention.__all__)
