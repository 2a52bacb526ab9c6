"""Layers, losses and their functional forms (cgrad.nn.functional)."""
from . import functional
from .modules import (ACTIVATIONS, ELU, GELU, MLP, SELU, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss,
                      Dropout, Flatten, Hardtanh, HuberLoss, Identity, L1Loss, LeakyReLU, Linear, Mish,
                      Module, MSELoss, NLLLoss, Parameter, ReLU, Sequential, Sigmoid, SiLU, Softmax,
                      Softsign, Tanh)
from .utils import clip_grad_norm_

__all__ = ["functional", "Module", "Parameter", "Linear", "Sequential", "ReLU", "LeakyReLU",
           "Sigmoid", "Tanh", "Softmax", "SiLU", "GELU", "ELU", "SELU", "Mish", "Softsign", "Hardtanh", "Dropout", "Flatten", "Identity", "MLP", "ACTIVATIONS",
           "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
           "HuberLoss", "clip_grad_norm_"]
