"""What the replay tests share: the plain training step and the bitwise comparison of two
models trained by it, one eagerly and one under cgrad.compile."""
import numpy as np

from cgrad.nn import functional as F


def train_step(model, opt, lossfn=F.cross_entropy):
    """The plain step (zero_grad, loss, backward, step) as a function of one batch."""
    def step(x, y):
        opt.zero_grad()
        out = lossfn(model(x), y)
        out.backward()
        opt.step()
        return out
    return step


def assert_same(m1, m2):
    """Parameters and gradients equal bit for bit."""
    for (name, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        assert np.array_equal(p1.numpy(), p2.numpy()), name
        g1, g2 = p1.grad, p2.grad
        assert (g1 is None) == (g2 is None), name
        if g1 is not None:
            assert np.array_equal(g1.numpy(), g2.numpy()), name
