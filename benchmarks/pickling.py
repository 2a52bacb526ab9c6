"""Pickling a model: pickle.dumps/loads of a ~1M-parameter MLP and copy.deepcopy of it,
beside numpy.save/numpy.load of the same arrays to a BytesIO (the memory-copy baseline)
and torch's pickle of the same architecture when torch is installed.

    python benchmarks/pickling.py            # full run, ~20 s
    python benchmarks/pickling.py --quick    # smoke run (CI)

The MLP is 784-1024-192-10 (1,002,570 float32 parameters, 4.0 MB). Medians over repeats
(min-max in brackets), in milliseconds; "/ numpy" divides by numpy.save (dumps rows) or
numpy.load (loads rows) of the parameters' arrays, measured in the same run.
"""
from __future__ import annotations

import copy
import io
import json
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import measure_together, start, summary, table  # noqa: E402

SIZES = [784, 1024, 192, 10]


def main() -> None:
    args, cgrad, torch = start(__doc__)
    import numpy as np

    repeat = 3 if args.quick else 15
    number = 1 if args.quick else 5
    cgrad.manual_seed(0)
    model = cgrad.nn.MLP(SIZES)
    n_params = model.num_parameters()
    arrays = [p.numpy() for p in model.parameters()]
    print(f"# cgrad {cgrad.__version__}, numpy {np.__version__}, torch {torch.__version__ if torch else 'not installed'}; "
          f"MLP {SIZES}: {n_params:,} float32 parameters ({n_params * 4 / 1e6:.1f} MB)")

    def np_save():
        buf = io.BytesIO()
        for a in arrays:
            np.save(buf, a, allow_pickle=False)
        return buf

    saved = np_save().getvalue()

    def np_load():
        buf = io.BytesIO(saved)
        return [np.load(buf, allow_pickle=False) for _ in arrays]

    blobs = {p: pickle.dumps(model, protocol=p) for p in (pickle.DEFAULT_PROTOCOL, 5)}
    cases = [("numpy.save (BytesIO)", np_save, "save"), ("numpy.load (BytesIO)", np_load, "load")]
    for p, blob in blobs.items():
        label = f"protocol {p}" + (" (default)" if p == pickle.DEFAULT_PROTOCOL else "")
        cases.append((f"pickle.dumps, {label}", lambda p=p: pickle.dumps(model, protocol=p), "save"))
        cases.append((f"pickle.loads, {label}", lambda blob=blob: pickle.loads(blob), "load"))
    cases.append(("copy.deepcopy", lambda: copy.deepcopy(model), "save"))
    if torch is not None:
        torch.manual_seed(0)
        layers = []
        for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
            layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(SIZES) - 2 else [])
        tmodel = torch.nn.Sequential(*layers)
        tblob = pickle.dumps(tmodel, protocol=5)
        cases.append(("torch: pickle.dumps, protocol 5", lambda: pickle.dumps(tmodel, protocol=5), "save"))
        cases.append(("torch: pickle.loads, protocol 5", lambda: pickle.loads(tblob), "load"))
        cases.append(("torch: copy.deepcopy", lambda: copy.deepcopy(tmodel), "save"))

    samples = measure_together([fn for _, fn, _ in cases], number, repeat, subtract_loop=False)
    meds = [summary(s, 1e3) for s in samples]
    base = {"save": meds[0][0], "load": meds[1][0]}
    rows = []
    for (name, _, kind), (med, lo, hi) in zip(cases, meds):
        rows.append({"operation": name, "ms": f"{med:.2f} [{lo:.2f}-{hi:.2f}]",
                     "MB/s": f"{n_params * 4 / 1e6 / (med / 1e3):.0f}", "/ numpy": f"{med / base[kind]:.2f}x"})
    print(table(rows, ["operation", "ms", "MB/s", "/ numpy"]))
    print(f"(pickle sizes: {', '.join(f'protocol {p} {len(b) / 1e6:.2f} MB' for p, b in blobs.items())}; "
          f"numpy.save {len(saved) / 1e6:.2f} MB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
