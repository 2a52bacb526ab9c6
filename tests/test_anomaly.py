"""detect_anomaly: the first op (forward) or backward rule that makes a NaN/Inf is named,
with its input shapes, its layer and the Python line that created it."""
import numpy as np
import pytest

import cgrad
from cgrad import nn


def test_sqrt_sqrt_reported_at_the_first_sqrt_backward():
    x = cgrad.tensor([2.0, 3.0], requires_grad=True)
    with cgrad.detect_anomaly():
        y = x - 2.0
        inner = y.sqrt()
        outer = inner.sqrt()  # the line the report must name
        with pytest.raises(RuntimeError) as err:
            outer.sum().backward()
    msg = str(err.value)
    assert "backward of op 'sqrt'" in msg and "shape (2,)" in msg
    assert "outer = inner.sqrt()" in msg and "test_anomaly.py" in msg
    assert not cgrad._C.is_anomaly_enabled()


def test_forward_nan_named_with_line_and_layer():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x).log()  # negative values -> NaN

    cgrad.manual_seed(0)
    net = Net()
    with cgrad.no_grad():
        net.fc.weight.fill_(-1.0)
    with cgrad.detect_anomaly():
        with pytest.raises(RuntimeError) as err:
            net(cgrad.ones(1, 2))
    msg = str(err.value)
    assert "op 'log' produced nan" in msg.replace("-nan", "nan")
    assert "from inputs of shape (1, 2)" in msg
    assert "return self.fc(x).log()" in msg and "(layer Net())" in msg


def test_non_finite_loss_reported_before_backward_runs():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    loss = (x - 5.0).log().sum()
    with cgrad.detect_anomaly():
        with pytest.raises(RuntimeError, match="already not finite"):
            loss.backward()
    assert x.grad is None


def test_off_by_default_and_clean_runs_pass():
    x = cgrad.tensor([-1.0], requires_grad=True)
    assert np.isnan(x.log().item())  # no check without anomaly mode
    with cgrad.detect_anomaly():
        (x * x).sum().backward()
    assert x.grad.item() == -2.0
