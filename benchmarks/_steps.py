"""One training step timed across frameworks, interleaved: the harness of the step
workloads (benchmarks/pinn.py, cnn.py, sequence.py) inside `python -m benchmarks`.

A workload is any object (a module, an instance) with:
    NAME, TARGETS ({framework: ratio to the fastest peer}), CHECK_STEPS
    make_batch(), init()            the batch and the initial weights every framework gets
    FRAMEWORKS                      {key: maker(batch, weights) -> (step, sync)}
    torch_compile_step(batch, weights)
    gemm_flops()                    the step's matrix-product FLOPs, by analysis
Each maker returns (step, sync): step() runs one training step and returns the loss without
waiting for it; sync(loss) waits for it and gives it as a Python float. The timing loop calls
sync once at the end of each repeat (JAX dispatches asynchronously; DEVELOPERS.md).
Nothing here fails for being slow: the targets are printed, not asserted.
"""
from __future__ import annotations

import statistics
import time

from _harness import measure_steps, table

PEERS = ("torch", "torch.compile", "jax")  # the fastest of them is the ratios' baseline
LABELS = {"cgrad": "cgrad eager", "cgrad-replay": "cgrad replay (cgrad.compile)", "torch": "PyTorch eager",
          "torch.compile": "PyTorch torch.compile", "jax": "JAX jit"}


def _error_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    for line in text.splitlines():  # the line that says why (dynamo wraps it in context)
        if "double backward" in line or "support" in line:
            return line.strip()[:160]
    return text.splitlines()[0][:160]


def try_torch_compile(workload, batch, weights):
    """torch.compile over the step: ((step, sync), its first loss, None, seconds to compile)
    when it takes it, else (None, None, the error's line, None)."""
    t0 = time.perf_counter()
    try:
        step, sync = workload.torch_compile_step(batch, weights)
        loss = sync(step())  # compiles (or raises) on this first call
        return (step, sync), loss, None, time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - any failure to compile is the finding
        return None, None, _error_line(exc), None


def measure(workload, frameworks, quick: bool, torch_compile: bool = True, extra=None,
            seconds_per_repeat: float = 0.1) -> dict:
    """Times the steps of the named frameworks (keys of workload.FRAMEWORKS; torch.compile is
    tried beside torch when torch_compile is set), their repeats interleaved so that the
    machine's drift hits them alike (_harness.measure_steps); medians and min-max per step.
    extra: {key: (step, sync)} timed with them but not a framework (no loss check), its
    medians in out["extra_us"]. Each repeat runs about seconds_per_repeat (quick: 0.01 s) of
    the slowest step. Returns the JSON-able result."""
    batch, weights = workload.make_batch(), workload.init()
    out = {"workload": workload.NAME, "gemm_flops": workload.gemm_flops(), "frameworks": {}}
    steps = {k: make(batch, weights) for k, make in workload.FRAMEWORKS.items() if k in frameworks}
    first = {}
    if torch_compile and "torch" in steps:
        compiled, first["torch.compile"], error, seconds = try_torch_compile(workload, batch, weights)
        out["torch_compile"] = {"compiles": compiled is not None, "error": error, "compile_s": seconds}
        if compiled:
            steps["torch.compile"] = compiled
        else:
            del first["torch.compile"]
    # the first CHECK_STEPS steps of each (which also record, compile and warm up): the check
    n_check = workload.CHECK_STEPS
    for k, (step, sync) in steps.items():
        losses = [first[k]] if k in first else []
        losses += [sync(step()) for _ in range(len(losses), n_check)]
        out["frameworks"][k] = {"first_loss": losses[0], "check_loss": losses[-1]}
    timed = {**steps, **(extra or {})}
    # steps per repeat: seconds_per_repeat of the slowest framework, so that each runs
    # several steps back to back as in training, not one step after another's in cache
    t0 = time.perf_counter()
    for step, sync in timed.values():
        sync(step())
    slowest = (time.perf_counter() - t0) / len(timed) * 2
    number = max(1, min(5000, int((0.01 if quick else seconds_per_repeat) / max(slowest, 1e-7))))
    repeat = 3 if quick else 21
    samples, last = measure_steps(timed, number, repeat)
    out["calls_per_repeat"], out["repeats"] = number, repeat
    for k in steps:
        s, f = samples[k], out["frameworks"][k]
        f.update(median_us=statistics.median(s) * 1e6, min_us=min(s) * 1e6, max_us=max(s) * 1e6, last_loss=last[k],
                 loss_down=bool(last[k] < f["check_loss"]))
    out["extra_us"] = {k: statistics.median(samples[k]) * 1e6 for k in extra or {}}
    return out


def agreement(res: dict, check_steps: int) -> list[str]:
    """The loss check, as printed lines: every framework's first-step (and check_steps-th
    step) loss against the first framework's."""
    fw = res["frameworks"]
    ref = next(iter(fw))
    lines = []
    for key, what, tol in (("first_loss", "first-step loss", 1e-4), ("check_loss", f"step-{check_steps} loss", 1e-3)):
        worst = max(abs(v[key] - fw[ref][key]) / abs(fw[ref][key]) for v in fw.values())
        vals = ", ".join(f"{k} {v[key]:.7g}" for k, v in fw.items())
        lines.append(f"{what}: {vals}; largest relative difference {worst:.1e} "
                     f"({'agree' if worst <= tol else 'DISAGREE'}, tolerance {tol:g})")
    return lines


def fastest_peer(frameworks: dict):
    """The key of the fastest peer (PyTorch eager, torch.compile, JAX jit) among
    {key: {"median_us": ...}}, None when none of them ran."""
    peers = [k for k in frameworks if k in PEERS]
    return min(peers, key=lambda k: frameworks[k]["median_us"]) if peers else None


def markdown(workload, res: dict, fma_peak_gflops=None, sgemm_gflops=None) -> str:
    """One row per framework: median step time [min-max], the ratio to the fastest peer
    of the run (with the workload's target for cgrad), the check losses; then the physical
    limit: the step's GEMM FLOPs at the core's FMA peak (at the sgemm speed without it)."""
    fw, n_check = res["frameworks"], workload.CHECK_STEPS
    fastest = fastest_peer(fw)
    vs = f"vs fastest peer ({LABELS[fastest]})" if fastest else "vs fastest peer"
    ms = lambda us: f"{us / 1e3:.3f}"  # noqa: E731
    rows = []
    for k, v in fw.items():
        row = {"step": LABELS[k], "ms/step": ms(v["median_us"]),
               "min-max": f"{v['min_us'] / 1e3:.2f}-{v['max_us'] / 1e3:.2f}",
               "first-step loss": f"{v['first_loss']:.7g}", f"step-{n_check} loss": f"{v['check_loss']:.7g}",
               "loss down": "yes" if v["loss_down"] else "NO"}
        if fastest:
            ratio = v["median_us"] / fw[fastest]["median_us"]
            row[vs] = f"{ratio:.2f}x"
            if k in workload.TARGETS:
                row["target"] = f"<= {workload.TARGETS[k]}x: {'met' if ratio <= workload.TARGETS[k] else 'missed'}"
        rows.append(row)
        if k == "torch" and "torch_compile" in res and not res["torch_compile"]["compiles"]:
            rows.append({"step": LABELS["torch.compile"], "ms/step": "does not compile"})
    peak, what = (fma_peak_gflops, "FMA peak") if fma_peak_gflops else (sgemm_gflops, "sgemm")
    if peak:
        limit = res["gemm_flops"] / peak / 1e3  # us
        row = {"step": f"limit: {res['gemm_flops'] / 1e6:.1f} MFLOP of GEMMs at the {what}, {peak:.0f} GFLOP/s",
               "ms/step": ms(limit)}
        if fastest:
            row[vs] = f"{limit / fw[fastest]['median_us']:.2f}x"
        rows.append(row)
    columns = ["step", "ms/step", "min-max"] + [vs, "target"] * bool(fastest) + \
        ["first-step loss", f"step-{n_check} loss", "loss down"]
    notes = agreement(res, n_check)
    tc = res.get("torch_compile")
    if tc and not tc["compiles"]:
        notes.append(f"torch.compile does not compile the step: {tc['error']}")
    elif tc and tc.get("compile_s"):
        notes.append(f"torch.compile took {tc['compile_s']:.1f} s to compile the step (its first call)")
    return "\n".join([table(rows, columns), ""] + notes + [
        f"{res['calls_per_repeat']} step(s) per repeat, {res['repeats']} repeats, interleaved; medians; "
        f"ratios from this run. No step can be faster than the limit row: its matrix products alone at the "
        f"core's peak (gemm_flops of the workload's module)."])


def jax_adam_stepper(loss_fn, params, batch, lr: float):
    """(step, sync) of loss_fn(params, *batch) trained by Adam (PyTorch's defaults: betas
    0.9, 0.999, eps 1e-8) with the whole step under one jax.jit, as JAX users write it:
    value_and_grad, Adam written out in jnp, parameters and Adam's state threaded through
    (no host sync inside; sync blocks on the last loss)."""
    import jax
    import jax.numpy as jnp
    b1, b2, eps = 0.9, 0.999, 1e-8
    tree = jax.tree_util.tree_map

    @jax.jit
    def train_step(params, m, v, count, *batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        count = count + 1
        m = tree(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = tree(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        c1, c2 = 1 - b1 ** count, 1 - b2 ** count
        params = tree(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), params, m, v)
        return params, m, v, count, loss

    zeros = tree(jnp.zeros_like, params)
    state = {"s": (params, zeros, zeros, jnp.zeros((), jnp.float32))}
    batch = tuple(jnp.asarray(a) for a in batch)

    def step():
        *s, loss = train_step(*state["s"], *batch)
        state["s"] = tuple(s)
        return loss
    return step, (lambda loss: float(loss.block_until_ready()))


def jax_sgd_stepper(loss_fn, params, batch, lr: float):
    """(step, sync) of loss_fn(params, *batch) trained by plain SGD under one jax.jit."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def train_step(params, *batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

    state = {"p": params}
    batch = tuple(jnp.asarray(a) for a in batch)

    def step():
        state["p"], loss = train_step(state["p"], *batch)
        return loss
    return step, (lambda loss: float(loss.block_until_ready()))


class TrainingStepWorkload:
    """The frameworks' steps of a workload that defines _parts(lib, weights, as_tensor) ->
    (net, opt) and torch_like_step(lib, net, opt) -> step(x, y), the same code for cgrad and
    PyTorch; jax_step is its own. Each maker returns (step, sync)."""
    CHECK_STEPS = 5
    TARGETS: dict = {}

    def __init__(self):
        self.FRAMEWORKS = {"cgrad": self.cgrad_step, "cgrad-replay": self.cgrad_replay_step,
                           "torch": self.torch_step, "jax": self.jax_step}

    def _eager(self, lib, weights, batch, as_tensor, compile_=None):
        step = self.torch_like_step(lib, *self._parts(lib, weights, as_tensor))
        if compile_:
            step = compile_(step)
        x, y = as_tensor(batch[0]), as_tensor(batch[1])
        return (lambda: step(x, y)), (lambda loss: loss.item())

    def cgrad_step(self, batch, weights):
        import cgrad
        return self._eager(cgrad, weights, batch, cgrad.from_numpy)

    def cgrad_replay_step(self, batch, weights):
        """Recorded on the first call, replayed in C after; the batch comes in as numpy
        arrays, as a compiled step's inputs are its arguments."""
        import cgrad
        step = cgrad.compile(self.torch_like_step(cgrad, *self._parts(cgrad, weights, cgrad.from_numpy)))
        return (lambda: step(*batch)), (lambda loss: loss.item())

    def torch_step(self, batch, weights):
        import torch
        return self._eager(torch, weights, batch, torch.from_numpy)

    def torch_compile_step(self, batch, weights):
        import torch
        return self._eager(torch, weights, batch, torch.from_numpy, compile_=torch.compile)

    def jax_step(self, batch, weights):
        raise NotImplementedError


class ClassifierWorkload(TrainingStepWorkload):
    """One classifier's training step (cross-entropy; Adam, or SGD with optimizer="sgd"):
    its builder (of an `nn`), batch maker, learning rate, the network as a jnp function of
    its parameters (named as its state_dict), and its GEMM FLOPs. init() gives every
    framework the weights cgrad's own initialisation draws (seed 0); a subclass may draw
    them otherwise."""

    def __init__(self, name, build, batch, lr, jax_forward, flops, optimizer="adam", targets=None):
        super().__init__()
        self.NAME, self.build, self._batch, self.lr, self.optimizer = name, build, batch, lr, optimizer
        if targets is not None:
            self.TARGETS = targets
        self._jax_forward, self._flops = jax_forward, flops

    def make_batch(self):
        return self._batch()

    def init(self):
        import cgrad
        cgrad.manual_seed(0)
        return {k: v.numpy().copy() for k, v in self.build(cgrad.nn).state_dict().items()}

    def gemm_flops(self) -> int:
        return self._flops()

    # ---- the steps ----
    def _parts(self, lib, weights, as_tensor):
        net = self.build(lib.nn)
        net.load_state_dict({k: as_tensor(v) for k, v in weights.items()})
        opt = lib.optim.SGD if self.optimizer == "sgd" else lib.optim.Adam
        return net, opt(net.parameters(), lr=self.lr)

    def torch_like_step(self, lib, net, opt):
        """The step as a PyTorch user writes it (the same code for cgrad and PyTorch)."""
        def step(x, y):
            opt.zero_grad()
            loss = lib.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            return loss
        return step

    def jax_step(self, batch, weights):
        """The network as a jnp function of its parameters, cross-entropy, and the whole
        Adam step under one jax.jit (benchmarks/_steps.py, jax_adam_stepper)."""
        import jax
        import jax.numpy as jnp

        def loss_fn(params, x, y):
            logp = jax.nn.log_softmax(self._jax_forward(params, x), axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

        params = {k: jnp.asarray(v) for k, v in weights.items()}
        stepper = jax_sgd_stepper if self.optimizer == "sgd" else jax_adam_stepper
        return stepper(loss_fn, params, batch, self.lr)
