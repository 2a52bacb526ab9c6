"""nanoGPT's character-level GPT (Karpathy) on Tiny Shakespeare, with the CPU recipe of
nanoGPT's README, written as a PyTorch program with only the import changed.

Usage:

    python examples/char_gpt.py             # cgrad: 2,000 iterations (a few minutes)
    python examples/char_gpt.py --compile   # each step recorded once and replayed in C
    python examples/char_gpt.py --torch     # the same script on PyTorch, to compare
    python examples/char_gpt.py --quick     # a smoke test (50 iterations)

The model (cgrad/models.py, char_gpt): 4 layers, 4 heads, width 128, block 64, no bias, no
dropout, the output layer tied to the token embedding; 0.80M parameters. The recipe: batch
12, 2,000 iterations; AdamW lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4 at
2,000, betas (0.9, 0.99), weight decay 0.1 on the matrices only; gradients clipped to norm
1.0; a 90/10 train/validation split of the characters. Every 250 iterations it prints the
loss on 20 batches of each split (nanoGPT's CPU recipe); at the end the validation loss on
200 batches (nanoGPT's default estimate; its README reports 1.88), the training time, and
200 characters sampled from the model (from the --top-k likeliest at each step).
"""
import argparse
import sys
import time

from cgrad.data import tinyshakespeare  # char-rnn's Tiny Shakespeare, bundled with cgrad (public domain)
from cgrad.models import char_gpt, gpt_lr, gpt_param_groups  # nanoGPT's model, groups and schedule

if "--torch" in sys.argv[1:]:
    import torch
else:
    import cgrad as torch

BLOCK, BATCH = 64, 12


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, help="default 2,000 (--quick: 50)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--top-k", type=int, default=10, help="sample from the k likeliest characters (nanoGPT's top_k)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="50 iterations: a smoke test")
    p.add_argument("--compile", action="store_true", help="cgrad only: record one step, replay it (cgrad.compile)")
    p.add_argument("--torch", action="store_true", help="run on PyTorch instead of cgrad")
    args = p.parse_args(argv)
    if args.compile and args.torch:
        p.error("--compile is cgrad's (cgrad.compile); PyTorch's torch.compile is a different thing")
    return args


def main(argv=None):
    args = parse_args(argv)
    iters = args.iters or (50 if args.quick else 2000)
    eval_interval, eval_iters, final_eval_iters = (25, 2, 5) if args.quick else (250, 20, 200)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    text = tinyshakespeare()
    chars = sorted(set(text))
    stoi, itos = {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    splits = {"train": data[:n], "val": data[n:]}

    def get_batch(split):
        d = splits[split]
        ix = torch.randint(len(d) - BLOCK, (BATCH,))
        x = torch.stack([d[i:i + BLOCK] for i in ix.tolist()])
        y = torch.stack([d[i + 1:i + 1 + BLOCK] for i in ix.tolist()])
        return x, y

    def estimate_loss(k):
        model.eval()
        out = {}
        with torch.no_grad():
            for split in splits:
                out[split] = sum(model(*get_batch(split))[1].item() for _ in range(k)) / k
        model.train()
        return out

    model = char_gpt(torch, len(chars), block_size=BLOCK)
    optimizer = torch.optim.AdamW(gpt_param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99))

    def step(x, y):
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    if args.compile:
        step = torch.compile(step)
    print(f"char GPT on {'PyTorch' if args.torch else 'cgrad'}{' (compiled)' if args.compile else ''}: "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {iters} iterations of "
          f"{BATCH}x{BLOCK} characters")
    t0, eval_time = time.perf_counter(), 0.0
    for it in range(iters):
        if it % eval_interval == 0:
            e0 = time.perf_counter()
            losses = estimate_loss(eval_iters)
            eval_time += time.perf_counter() - e0
            print(f"iter {it:5d}  train loss {losses['train']:.4f}  val loss {losses['val']:.4f}", flush=True)
        for group in optimizer.param_groups:
            group["lr"] = gpt_lr(it, decay_iters=iters)
        loss = step(*get_batch("train"))
    elapsed = time.perf_counter() - t0 - eval_time
    val_loss = estimate_loss(final_eval_iters)["val"]
    print(f"val loss: {val_loss:.4f}")
    print(f"trained in {elapsed:.1f} s ({elapsed / iters * 1e3:.1f} ms per iteration, evaluations excluded); "
          f"last training loss {loss.item():.4f}")

    model.eval()
    idx = torch.zeros((1, 1), dtype=torch.long)  # index 0 is the newline
    with torch.no_grad():
        for _ in range(200):
            logits, _ = model(idx[:, -BLOCK:])
            logits = logits[:, -1, :]
            v, _ = torch.topk(logits, min(args.top_k, logits.shape[-1]))
            logits[logits < v[:, [-1]]] = -float("Inf")  # keep the top k, as nanoGPT's sample.py
            probs = torch.nn.functional.softmax(logits, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
    print("sample:\n" + "".join(itos[i] for i in idx[0].tolist()))
    return val_loss


if __name__ == "__main__":
    main()
