"""Time per training step of Bort-S ÷ SGD and Bort-A ÷ AdamW (target ≤ 1.10), plus Δ alone beside forward+backward.

    python benchmarks/bort_overhead.py [--repeats 20] [--device auto]

Batch 256 of MNIST-shaped inputs, lenet and acnn_small (width 0.25). Steps of the two optimizers are interleaved
and the median is taken, so machine noise hits both sides alike.
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from xbench.models import create_model
from xbench.optim import bort_delta, create_optimizer
from xbench.layers import constrained_weights
from xbench.train import resolve_device

from _timing import timed


def train_step(model, opt, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    x = torch.randn(256, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (256,), device=device)
    rows = []
    for name, kw in [("lenet", {}), ("acnn_small", {"width": 0.25})]:
        for base, bort in [("sgd", "bort-s"), ("adamw", "bort-a")]:
            pair = {}
            for opt_name in (base, bort):
                torch.manual_seed(0)
                model = create_model(name, (1, 28, 28), 10, **kw).to(device)
                lr = 0.01 if base == "sgd" else 1e-3
                pair[opt_name] = (model, create_optimizer(opt_name, model, lr=lr, weight_decay=0.01))
            times = {k: [] for k in pair}
            for i in range(args.repeats + 3):
                for k, (model, opt) in pair.items():
                    t, _ = timed(lambda: train_step(model, opt, x, y), device)
                    if i >= 3:  # warm-up
                        times[k].append(t)
            model = pair[bort][0]
            weights = [w for _, w in constrained_weights(model)]
            def all_deltas():
                with torch.no_grad():
                    for w in weights:
                        bort_delta(w, "l2", 1.0)

            def forward_backward():
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()

            delta_t = [timed(all_deltas, device)[0] for _ in range(args.repeats + 3)][3:]
            fb = [timed(forward_backward, device)[0] for _ in range(args.repeats + 3)][3:]
            tb, tx = statistics.median(times[base]), statistics.median(times[bort])
            rows.append((f"{name}{'(w0.25)' if kw else ''}", f"{bort} ÷ {base}", tb * 1e3, tx * 1e3, tx / tb,
                         statistics.median(delta_t) * 1e3, statistics.median(fb) * 1e3))
    print(f"device: {device}, batch 256, 1×28×28, median of {args.repeats} interleaved steps")
    print(f"| model | ratio | base ms/step | bort ms/step | bort ÷ base | Δ alone ms | fwd+bwd ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | **{r[4]:.3f}** | {r[5]:.3f} | {r[6]:.2f} |")


if __name__ == "__main__":
    main()
