"""The `cgrad` command: `cgrad example` runs the lecture's worked example; `cgrad info`
prints the build configuration."""
from __future__ import annotations

import argparse
import sys


def worked_example() -> None:
    """f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))), the lecture's sigmoid neuron."""
    import cgrad

    w = cgrad.tensor([2.0, -3.0, -3.0], dtype=cgrad.float64, requires_grad=True)
    x = cgrad.tensor([-1.0, -2.0], dtype=cgrad.float64, requires_grad=True)
    z = w[0] * x[0] + w[1] * x[1] + w[2]
    f = (z).sigmoid()
    f.backward()
    print("f(w, x) = sigmoid(w0*x0 + w1*x1 + w2) with w = (2, -3, -3), x = (-1, -2)")
    print(f"  forward  f      = {f.item():.2f}")
    print(f"  backward df/dw  = {[round(v, 2) for v in w.grad.tolist()]}")
    print(f"           df/dx  = {[round(v, 2) for v in x.grad.tolist()]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cgrad", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("example", help="run the lecture's worked example (forward and backward)")
    sub.add_parser("info", help="print version, BLAS provider and threads")
    args = parser.parse_args(argv)
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
