"""The recipe models of cgrad/models.py (the MNIST-1D GRU, makemore's MLP, nanoGPT's GPT),
built once in cgrad and once in PyTorch from the same state_dict: the same outputs, loss
and gradient of every parameter, and for the GPT the same 20-step trajectory of nanoGPT's
step (AdamW with groups, clipping). The layers are tested one by one in their own files;
this checks them composed, as the benchmarks and `cgrad train` use them."""
import numpy as np
import pytest

import cgrad
from cgrad import models

torch = pytest.importorskip("torch")


def _twins(build):
    """(cgrad model, torch model) with cgrad's initial weights in both."""
    cgrad.manual_seed(0)
    ours = build(cgrad)
    theirs = build(torch)
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    return ours, theirs


def _grads(model):  # cgrad's or torch's
    return {k: p.grad.numpy() for k, p in model.named_parameters()}


def _assert_grads_close(ours, theirs, rtol, atol):
    a, b = _grads(ours), _grads(theirs)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


def _gpt(lib):
    return models.char_gpt(lib, 65, block_size=16, n_layer=2, n_head=4, n_embd=32)


def test_gru_classifier_matches_torch():
    ours, theirs = _twins(lambda lib: models.mnist1d_gru(lib.nn))
    X, y, _, _ = cgrad.data.mnist1d()
    x, t = X[:8], y[:8]
    loss = cgrad.nn.functional.cross_entropy(ours(cgrad.from_numpy(x)), cgrad.from_numpy(t))
    tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(t))
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    _assert_grads_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_names_mlp_matches_torch():
    ours, theirs = _twins(lambda lib: models.names_mlp(lib.nn))
    rng = np.random.default_rng(0)
    x, t = rng.integers(0, 27, (32, 3)), rng.integers(0, 27, 32)
    loss = cgrad.nn.functional.cross_entropy(ours(cgrad.from_numpy(x)), cgrad.from_numpy(t))
    tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(t))
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-6)
    _assert_grads_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_gpt_is_nanogpts_size_and_ties_the_output_layer():
    cgrad.manual_seed(0)
    gpt = models.char_gpt(cgrad, 65)
    n = sum(p.numel() for p in gpt.parameters())
    assert n - 64 * 128 == 795_904  # nanoGPT prints 0.80M (without the position embedding)
    assert gpt.lm_head.weight is gpt.transformer.wte.weight
    w = gpt.transformer.h[0].attn.c_proj.weight.numpy()
    assert abs(w.std() - 0.02 / np.sqrt(8)) < 2e-4  # GPT-2's scaled residual init


def test_gpt_loss_and_gradients_match_torch():
    ours, theirs = _twins(_gpt)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 65, (3, 16)), rng.integers(0, 65, (3, 16))
    logits, loss = ours(cgrad.from_numpy(x), cgrad.from_numpy(y))
    tlogits, tloss = theirs(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(logits.numpy(), tlogits.detach().numpy(), rtol=1e-4, atol=1e-5)
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    _assert_grads_close(ours, theirs, rtol=1e-3, atol=1e-6)


def test_gpt_20_step_trajectory_matches_torch():
    """nanoGPT's step (forward to the loss, backward, clip to 1.0, AdamW with groups and the
    warm-up schedule) 20 times, in float32 in both."""
    ours, theirs = _twins(_gpt)
    rng = np.random.default_rng(2)
    batches = [(rng.integers(0, 65, (4, 16)), rng.integers(0, 65, (4, 16))) for _ in range(20)]
    curves = {}
    for lib, net in ((cgrad, ours), (torch, theirs)):
        opt = lib.optim.AdamW(models.gpt_param_groups(net, 0.1), lr=1e-3, betas=(0.9, 0.99))
        seen = []
        for it, (x, y) in enumerate(batches):
            for g in opt.param_groups:
                g["lr"] = models.gpt_lr(it, warmup=5, decay_iters=20)
            _, loss = net(lib.from_numpy(x), lib.from_numpy(y))
            loss.backward()
            lib.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            seen.append(loss.item())
        curves[lib.__name__] = seen
    np.testing.assert_allclose(curves["cgrad"], curves["torch"], rtol=1e-5)
    assert curves["cgrad"][-1] < curves["cgrad"][0]


def test_gpt_rejects_a_sequence_longer_than_its_block():
    cgrad.manual_seed(0)
    with pytest.raises(ValueError, match="GPT: a sequence of 17 tokens is longer than the block size 16"):
        _gpt(cgrad)(cgrad.zeros((1, 17), dtype=cgrad.long))
