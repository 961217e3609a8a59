"""Seconds per image for every interpreter, and two ratios: batched SAT ÷ per-channel loop, RISE ÷ its bare forwards.

    python benchmarks/interpreters.py [--device auto] [--images 32]

Models: lenet and acnn_small (width 0.25) on mnist10k-shaped inputs (random weights: speed does not depend on
training), batch 32, every interpreter at its defaults. XRAI's per-image segmentation is cached after the first
call, so it is timed warm and the one-off segmentation cost is printed separately.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

from xbench.data import create_dataset
from xbench.interpreters import INTERPRETERS, create_interpreter
from xbench.interpreters.rise import rise_masks
from xbench.interpreters.sat import sat_by_loop
from xbench.interpreters.xrai import segments_for
from xbench.interpreters._pair import to_hwc
from xbench.models import create_model
from xbench.space import inputs_per_pass
from xbench.train import resolve_device

from _timing import timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=32)
    args = ap.parse_args()
    device = resolve_device(args.device)
    data = create_dataset("mnist10k")
    x, _ = data.inputs("heldout", range(args.images), device)
    t0 = time.perf_counter()
    for p in data.space.to_pixels(x).cpu():
        segments_for(to_hwc(p))
    seg = (time.perf_counter() - t0) / len(x)
    models = {"lenet": create_model("lenet"), "acnn_small(w0.25)": create_model("acnn_small", width=0.25)}
    per_image = {}
    ratios = []
    for mname, model in models.items():
        torch.manual_seed(0)
        model = model.to(device).eval()
        target = model(x).argmax(1)
        for name in INTERPRETERS.list():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                interp = create_interpreter(name, model, data.space)
            interp.attribute(x[:2], target[:2])  # warm-up
            t, _ = timed(lambda: interp.attribute(x, target), device)
            per_image[(mname, name)] = t / len(x)
        sat = create_interpreter("sat", model, data.space)
        t_batched, a = timed(lambda: sat.attribute(x, target), device)
        t_loop, b = timed(lambda: sat_by_loop(model, x), device)
        ratios.append((f"SAT per-channel loop ÷ batched ({mname})", t_loop / t_batched, "≥ 10",
                       f"max |diff| {float((a - b).abs().max()):.1e}"))
        rise = create_interpreter("rise", model, data.space)
        t_rise, _ = timed(lambda: rise.attribute(x, target), device)
        masks = rise_masks(0, rise.hparams["n_masks"], rise.hparams["grid"], rise.hparams["p"], 28, 28, device)
        per_pass = max(1, inputs_per_pass(rise.hparams["batch_size"], tuple(x.shape[1:])) // len(x))
        size = len(x) * per_pass
        # distinct ready-made batches, cycled, so the bare passes do not run from one cache-warm tensor
        pool = [x[(torch.arange(size, device=device) * 7 + k) % len(x)] for k in range(4)]

        def bare():
            with torch.no_grad():
                for i, s in enumerate(range(0, len(masks), per_pass)):
                    model(pool[i % 4][: len(x) * len(masks[s:s + per_pass])])

        t_bare, _ = timed(bare, device)
        ratios.append((f"RISE ÷ its {len(masks) * len(x)} bare forwards ({mname})", t_rise / t_bare, "≤ 1.2", ""))
    print(f"device: {device}; {len(x)} mnist10k images per call; ms per image (XRAI segmentation, once per image and "
          f"shared by all models: {seg * 1000:.0f} ms)")
    print("| interpreter | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for name in INTERPRETERS.list():
        print(f"| {name} | " + " | ".join(f"{per_image[(m, name)] * 1000:.2f}" for m in models) + " |")
    print("\n| ratio | value | target | note |\n|---|---|---|---|")
    for label, value, target, note in ratios:
        print(f"| {label} | **{value:.2f}** | {target} | {note} |")


if __name__ == "__main__":
    main()
