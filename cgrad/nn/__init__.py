"""Layers, losses and their functional forms (cgrad.nn.functional)."""
from . import functional
from .modules import (ACTIVATIONS, MLP, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Dropout,
                      Flatten, HuberLoss, Identity, L1Loss, LeakyReLU, Linear, Module, MSELoss,
                      NLLLoss, Parameter, ReLU, Sequential, Sigmoid, Softmax, Tanh)
from .utils import clip_grad_norm_

__all__ = ["functional", "Module", "Parameter", "Linear", "Sequential", "ReLU", "LeakyReLU",
           "Sigmoid", "Tanh", "Softmax", "Dropout", "Flatten", "Identity", "MLP", "ACTIVATIONS",
           "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
           "HuberLoss", "clip_grad_norm_"]
