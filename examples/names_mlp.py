"""makemore's character-level MLP language model (Bengio et al. 2003; Karpathy's makemore,
part 2) on the bundled list of 32,033 names, written as a PyTorch program with only the
import changed.

Usage:

    python examples/names_mlp.py             # cgrad: 20,000 SGD steps (a few seconds)
    python examples/names_mlp.py --compile   # each step recorded once and replayed in C
    python examples/names_mlp.py --torch     # the same script on PyTorch, to compare
    python examples/names_mlp.py --quick     # a smoke test

The model (cgrad/models.py, names_mlp): Embedding(27, 10) of the 3 characters before each
one, flatten (30), Linear(30, 200), tanh, Linear(200, 27); 11,897 parameters. The names are
shuffled with Python's random.seed(42) and split 80/10/10, as in makemore. The recipe: SGD
lr 0.1, batch 32 drawn at random, 20,000 steps, cross-entropy. It prints the train and dev
losses (makemore reaches 2.17 on dev after 200,000 steps with a learning-rate drop; 20,000
steps at 0.1 reach about 2.22), the training time, and 10 names sampled from the model.
"""
import argparse
import random
import sys
import time

from cgrad.data import names  # makemore's names.txt, bundled with cgrad (MIT)
from cgrad.models import names_mlp  # the model, written in PyTorch's nn

if "--torch" in sys.argv[1:]:
    import torch
else:
    import cgrad as torch

nn, F = torch.nn, torch.nn.functional
BLOCK = 3  # characters of context


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="1,000 steps: a smoke test")
    p.add_argument("--compile", action="store_true", help="cgrad only: record one step, replay it (cgrad.compile)")
    p.add_argument("--torch", action="store_true", help="run on PyTorch instead of cgrad")
    args = p.parse_args(argv)
    if args.compile and args.torch:
        p.error("--compile is cgrad's (cgrad.compile); PyTorch's torch.compile is a different thing")
    return args


def build_dataset(words, stoi):
    X, Y = [], []
    for w in words:
        context = [0] * BLOCK
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


def main(argv=None):
    args = parse_args(argv)
    steps = 1000 if args.quick else args.steps
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    words = names()
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    itos = {i: s for s, i in stoi.items()}
    random.seed(42)
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    Xtr, Ytr = build_dataset(words[:n1], stoi)
    Xdev, Ydev = build_dataset(words[n1:n2], stoi)

    model = names_mlp(nn)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)

    def step(xb, yb):
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    if args.compile:
        step = torch.compile(step)
    print(f"names MLP on {'PyTorch' if args.torch else 'cgrad'}{' (compiled)' if args.compile else ''}: "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, {steps} steps of batch 32")
    t0 = time.perf_counter()
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (32,))
        loss = step(Xtr[ix], Ytr[ix])
        if (i + 1) % 5000 == 0 or i + 1 == steps:
            print(f"step {i + 1:6d}  loss {loss.item():.4f}")
    elapsed = time.perf_counter() - t0

    model.eval()
    with torch.no_grad():
        train_loss = F.cross_entropy(model(Xtr), Ytr).item()
        dev_loss = F.cross_entropy(model(Xdev), Ydev).item()
        samples = []
        for _ in range(10):
            out, context = [], [0] * BLOCK
            while True:
                probs = F.softmax(model(torch.tensor([context])), dim=1)
                ix = torch.multinomial(probs, num_samples=1).item()
                if ix == 0:
                    break
                out.append(itos[ix])
                context = context[1:] + [ix]
            samples.append("".join(out))
    print(f"train loss: {train_loss:.4f}")
    print(f"dev loss: {dev_loss:.4f}")
    print(f"trained in {elapsed:.2f} s ({elapsed / steps * 1e6:.0f} us per step)")
    print("samples: " + " ".join(samples))
    return dev_loss


if __name__ == "__main__":
    main()
