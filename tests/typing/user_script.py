"""A small user script that mypy must accept (tests/test_typing.py runs mypy on it)."""
import numpy as np

import cgrad
from cgrad import nn

x: cgrad.Tensor = cgrad.tensor(np.ones((4, 3)), requires_grad=True)
model = nn.MLP([3, 8, 2])
loss = nn.functional.cross_entropy(model(x), np.array([0, 1, 1, 0]))
loss.backward()
opt = cgrad.optim.SGD(model.parameters(), lr=0.1)
opt.step()
grad = x.grad
shape: tuple[int, ...] = x.shape
value: float = loss.item()
print(shape, value, grad is None)
