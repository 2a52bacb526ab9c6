"""The `cgrad` command.

    cgrad train                      train an MLP on the bundled digits and report test accuracy
    cgrad train --dataset spirals --hidden 64 64 --activation tanh --epochs 200
    cgrad train --model cnn          a LeNet-style CNN on the digits
    cgrad train --dataset mnist1d --model cnn    the MNIST-1D paper's CNN and recipe (~92-94%)
    cgrad train --dataset mnist1d --model gru    the paper's bidirectional GRU
    cgrad train --model gpt [--text FILE]        nanoGPT's character-level GPT (Tiny Shakespeare)
    cgrad train --validation-split 0.2 --plot curves.png   save the loss/accuracy curves
    cgrad profile                    per-layer backward times, gradient health, a Chrome trace
    cgrad profile --plot layers.png  ... and a bar chart of each layer's dW/dX time
    cgrad example                    the lecture's worked example, forward and backward
    cgrad info                       version, BLAS provider, threads
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def check_plot(command: str, path) -> None:
    """Before the work, so a missing matplotlib or folder does not cost a finished run."""
    if path is None:
        return
    from cgrad.viz import _matplotlib
    try:
        _matplotlib(f"cgrad {command} --plot")
    except ImportError as e:
        raise SystemExit(str(e)) from None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SystemExit(f"cgrad {command}: --plot {path}: the folder {folder} does not exist")


def worked_example() -> None:
    """f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))), the lecture's sigmoid neuron."""
    import cgrad

    w = cgrad.tensor([2.0, -3.0, -3.0], dtype=cgrad.float64, requires_grad=True)
    x = cgrad.tensor([-1.0, -2.0], dtype=cgrad.float64, requires_grad=True)
    f = (w[0] * x[0] + w[1] * x[1] + w[2]).sigmoid()
    f.backward()
    print("f(w, x) = sigmoid(w0*x0 + w1*x1 + w2) with w = (2, -3, -3), x = (-1, -2)")
    print(f"  forward  f      = {f.item():.2f}")
    print(f"  backward df/dw  = {[round(v, 2) for v in w.grad.tolist()]}")
    print(f"           df/dx  = {[round(v, 2) for v in x.grad.tolist()]}")


def cnn_for(dataset: str, nn):
    """The CNN of `cgrad train --model cnn`: the MNIST-1D paper's (Greydanus 2020) on
    mnist1d, a LeNet-style one on the 8x8 digits. nn: cgrad.nn (or torch.nn: the same code)."""
    if dataset == "mnist1d":
        return nn.Sequential(nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
                             nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(125, 10))
    if dataset == "digits":
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(128, 10))
    raise SystemExit(f"cgrad train: --model cnn is for the digits and mnist1d, not {dataset}")


# Defaults of `cgrad train` where the arguments leave them open: on mnist1d the paper's
# recipe (Adam 1e-2, batch 100, 6,000 steps = 150 epochs, batches in order); the digits CNN
# trains at 3e-3 (at 1e-3 it reaches 97.8% in 30 epochs, below the MLP's 98.4%; at 3e-3 99.1%)
DEFAULTS: dict[tuple, dict[str, float]] = {
    ("mnist1d", "cnn"): {"lr": 1e-2, "batch_size": 100, "epochs": 150},
    ("mnist1d", "mlp"): {"lr": 1e-2, "batch_size": 100, "epochs": 150},
    ("digits", "cnn"): {"lr": 3e-3},
    ("mnist1d", "gru"): {"lr": 1e-2, "batch_size": 100, "epochs": 150},
}
# nanoGPT's CPU recipe (its README): the defaults of `cgrad train --model gpt`
GPT_DEFAULTS = {"lr": 1e-3, "batch_size": 12, "iters": 2000}


def train_gpt(args) -> int:
    """nanoGPT's character-level recipe on any text: a 90/10 split of its characters, AdamW
    (groups, warm-up and cosine decay), clipping; losses every 250 iterations, the final
    validation loss on 200 batches, 200 sampled characters."""
    import numpy as np

    import cgrad
    from cgrad.models import char_gpt, gpt_lr, gpt_param_groups

    for k, v in GPT_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.text:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    else:
        text = cgrad.data.tinyshakespeare()
    chars = sorted(set(text))
    if len(text) < 10 * (args.block_size + 1):
        raise SystemExit(f"cgrad train: the text has {len(text)} characters, too few for blocks of {args.block_size}")
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], np.int64)
    n = int(0.9 * len(data))
    splits = {"train": data[:n], "val": data[n:]}
    cgrad.manual_seed(args.seed)
    cgrad.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    def batch(split):
        d = splits[split]
        ix = rng.integers(0, len(d) - args.block_size, args.batch_size)[:, None] + np.arange(args.block_size)
        return d[ix], d[ix + 1]

    model = char_gpt(cgrad, len(chars), block_size=args.block_size)
    opt = cgrad.optim.AdamW(gpt_param_groups(model, 0.1), lr=args.lr, betas=(0.9, 0.99))

    def step(x, y):
        _, loss = model(x, y)
        loss.backward()
        cgrad.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        return loss

    def estimate(k):
        model.eval()
        with cgrad.no_grad():
            out = {s: float(np.mean([model(*map(cgrad.from_numpy, batch(s)))[1].item() for _ in range(k)]))
                   for s in splits}
        model.train()
        return out

    if args.replay:
        step = cgrad.compile(step)
    print(f"text: {len(text):,} characters, {len(chars)} distinct; GPT of "
          f"{model.num_parameters() / 1e6:.2f}M parameters, {args.iters} iterations of {args.batch_size}x{args.block_size}")
    elapsed = 0.0
    for it in range(args.iters):
        if it % 250 == 0 and not args.quiet:
            losses = estimate(20)
            print(f"iter {it:5d}  train loss {losses['train']:.4f}  val loss {losses['val']:.4f}", flush=True)
        for group in opt.param_groups:
            group["lr"] = gpt_lr(it, lr=args.lr, min_lr=args.lr / 10, decay_iters=args.iters)
        xb, yb = batch("train")
        t0 = time.perf_counter()
        step(xb, yb) if args.replay else step(cgrad.from_numpy(xb), cgrad.from_numpy(yb))
        elapsed += time.perf_counter() - t0
    print(f"val loss {estimate(200)['val']:.4f}")
    print(f"trained {args.iters} iterations in {elapsed:.1f} s ({elapsed / args.iters * 1e3:.1f} ms per iteration)")
    model.eval()
    idx = np.zeros((1, 1), np.int64)
    with cgrad.no_grad():
        for _ in range(200):
            logits, _ = model(cgrad.from_numpy(idx[:, -args.block_size:]))
            probs = cgrad.nn.functional.softmax(logits[:, -1, :], dim=-1)
            idx = np.concatenate([idx, cgrad.multinomial(probs, 1).numpy()], axis=1)
    print("sample:\n" + "".join(chars[i] for i in idx[0]))
    if args.save:
        cgrad.save(model.state_dict(), args.save)
        print(f"saved the model's state dict to {args.save}")
    return 0


def train(args) -> int:
    import numpy as np

    import cgrad
    from cgrad import data

    if args.model == "gpt":
        for flag, value in (("--plot", args.plot), ("--validation-split", args.validation_split)):
            if value:  # the GPT recipe has its own split and reports every 250 iterations, not epochs
                raise SystemExit(f"cgrad train: {flag} is for the per-epoch models, not --model gpt")
        return train_gpt(args)
    check_plot("train", args.plot)
    if not 0 <= args.validation_split < 1:
        raise SystemExit(f"cgrad train: --validation-split must be in [0, 1), not {args.validation_split}")
    if args.text:
        raise SystemExit("cgrad train: --text is for --model gpt")
    cgrad.manual_seed(args.seed)
    cgrad.set_num_threads(args.threads)
    shuffle = args.dataset != "mnist1d"  # the paper's batches come in order
    defaults = {"lr": 1e-3, "batch_size": 32, "epochs": 30, **DEFAULTS.get((args.dataset, args.model), {})}
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.dataset == "digits":
        X_tr, y_tr, X_te, y_te = data.digits(flatten=args.model == "mlp")
    elif args.dataset == "mnist1d":
        X_tr, y_tr, X_te, y_te = data.mnist1d()
    else:
        X, y = data.DATASETS[args.dataset](n=args.samples, seed=args.seed)
        X_tr, y_tr, X_te, y_te = data.train_test_split(X, y, test_size=0.25, seed=args.seed)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    if args.model == "cnn":
        model = cnn_for(args.dataset, cgrad.nn)
        X_tr, X_te = X_tr[:, None], X_te[:, None]  # the channel axis
    elif args.model == "gru":
        if args.dataset != "mnist1d":
            raise SystemExit(f"cgrad train: --model gru is for mnist1d (a sequence of 40 samples), not {args.dataset}")
        from cgrad.models import mnist1d_gru
        model = mnist1d_gru(cgrad.nn)
    else:
        model = cgrad.nn.MLP([X_tr.shape[1], *args.hidden, n_classes], activation=args.activation)
    opt: cgrad.optim.Optimizer
    if args.optimizer == "adam":
        opt = cgrad.optim.Adam(model.parameters(), lr=args.lr)
    else:
        opt = cgrad.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    print(f"dataset {args.dataset}: {len(X_tr)} training and {len(X_te)} test examples of shape "
          f"{X_tr.shape[1:]}, {n_classes} classes")
    print(model.summary())
    trainer = cgrad.Trainer(model, "cross_entropy", opt, seed=args.seed, replay=args.replay)
    t0 = time.perf_counter()
    history = trainer.fit(X_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size, shuffle=shuffle,
                          validation_split=args.validation_split, verbose=0 if args.quiet else 1)
    elapsed = time.perf_counter() - t0
    test = trainer.evaluate(X_te, y_te)
    steps = len(history.epoch) * -(-len(X_tr) // args.batch_size)
    print(f"test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f}")
    print(f"trained {len(history.epoch)} epochs in {elapsed:.2f} s "
          f"({np.sum(history['time']) / steps * 1e6:.0f} us per step)")
    if args.save:
        cgrad.save(model.state_dict(), args.save)
        print(f"saved the model's state dict to {args.save}")
    if args.plot:
        split = f", {args.validation_split:.0%} of the training set held out" if args.validation_split else ""
        history.plot(path=args.plot, title=f"{args.model.upper()} on {args.dataset}{split}")
        print(f"saved the training curves to {args.plot}" + ("" if args.validation_split else
              " (training only; --validation-split adds validation curves)"))
    return 0


def profile_cmd(args) -> int:
    """Train a few steps under the profiler; print the per-layer backward table and the
    gradient-health report; save a Chrome trace."""
    import cgrad
    from cgrad import data, nn

    check_plot("profile", args.plot)
    cgrad.manual_seed(args.seed)
    X_tr, y_tr, _, _ = data.digits()
    model = nn.MLP([X_tr.shape[1], *args.hidden, 10], activation=args.activation)
    opt = cgrad.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loader = data.DataLoader(X_tr, y_tr, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    batches = iter(loader)
    with cgrad.profile() as prof:
        for _ in range(args.steps):
            try:
                xb, yb = next(batches)
            except StopIteration:
                batches = iter(loader)
                xb, yb = next(batches)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    sizes = [X_tr.shape[1], *args.hidden, 10]
    print(f"{args.steps} training steps of an MLP {sizes} ({args.activation}) on the digits, "
          f"batch {args.batch_size}")
    print()
    print("backward by layer:")
    print(prof.table(by="layer", phase="backward"))
    print()
    print("gradient health (one batch):")
    print(cgrad.diagnostics.health(model, X_tr[:256], y_tr[:256], "cross_entropy", optimizer=opt))
    prof.export_chrome_trace(args.trace)
    print(f"\nChrome trace saved to {args.trace}: open it in https://ui.perfetto.dev or chrome://tracing")
    if args.plot:
        cgrad.viz.plot_backward_by_layer(prof, path=args.plot, title=f"backward time by layer: MLP {sizes} "
                                         f"({args.activation}) on the digits, batch {args.batch_size}")
        print(f"bar chart of the backward time by layer saved to {args.plot}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cgrad", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    t = sub.add_parser("train", help="train an MLP, CNN or GRU classifier (the bundled digits by default), "
                                     "or a character-level GPT on a text (--model gpt)")
    t.add_argument("--dataset", default="digits", choices=["digits", "mnist1d", "xor", "moons", "spirals", "blobs"])
    t.add_argument("--model", default="mlp", choices=["mlp", "cnn", "gru", "gpt"],
                   help="an MLP (--hidden, --activation), the dataset's CNN (digits, mnist1d), the MNIST-1D "
                        "paper's GRU (mnist1d), or nanoGPT's character GPT (--text)")
    t.add_argument("--text", metavar="FILE", help="--model gpt: the text to train on (default: Tiny Shakespeare)")
    t.add_argument("--iters", type=int, help="--model gpt: training iterations (default 2000)")
    t.add_argument("--block-size", type=int, default=64, help="--model gpt: characters of context")
    t.add_argument("--samples", type=int, default=600, help="size of a synthetic dataset")
    t.add_argument("--hidden", type=int, nargs="*", default=[128], help="hidden layer sizes")
    t.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid", "leaky_relu"])
    t.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3; mnist1d: 1e-2; the digits CNN: 3e-3; "
                                            "the GPT: 1e-3, the peak of its schedule)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--epochs", type=int, help="default 30; mnist1d: 150 (the paper's 6,000 steps)")
    t.add_argument("--batch-size", type=int, help="default 32; mnist1d: 100; the GPT: 12")
    t.add_argument("--replay", action="store_true", help="record the step once and replay it (cgrad.compile)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1, help="BLAS threads")
    t.add_argument("--save", metavar="PATH", help="save the trained state dict (.npz)")
    t.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    t.add_argument("--validation-split", type=float, default=0.0, metavar="FRACTION",
                   help="hold out this fraction of the training set (after one shuffle) for validation "
                        "loss and metrics each epoch")
    t.add_argument("--plot", metavar="PATH", help="save the loss and metric curves per epoch (needs matplotlib)")
    pr = sub.add_parser("profile", help="profile training steps of an MLP on the digits: per-layer "
                                        "backward table, gradient health, Chrome trace")
    pr.add_argument("--hidden", type=int, nargs="*", default=[256, 256])
    pr.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid", "leaky_relu"])
    pr.add_argument("--lr", type=float, default=0.01)
    pr.add_argument("--batch-size", type=int, default=128)
    pr.add_argument("--steps", type=int, default=20)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--trace", default="cgrad-trace.json", help="where to write the Chrome trace")
    pr.add_argument("--plot", metavar="PATH", help="save a bar chart of each layer's backward time, split "
                                                   "into dW and dX (needs matplotlib)")
    sub.add_parser("example", help="run the lecture's worked example (forward and backward)")
    sub.add_parser("info", help="print version, BLAS provider and threads")
    args = parser.parse_args(argv)
    if args.command == "train":
        return train(args)
    if args.command == "profile":
        return profile_cmd(args)
    if args.command == "example":
        worked_example()
    elif args.command == "info":
        import cgrad
        cgrad.show_config()
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
