"""Deletion + insertion for 256 images: our time, our time ÷ the bare forward passes the protocol needs (target
≤ 1.25), and Quantus's PixelFlipping side by side at the same number of forward passes, with AUC agreement.

    python benchmarks/perturbation.py [--device auto] [--images 256] [--no-quantus]

Quantus 0.6.0 needs numpy < 2.4 (it calls np.trapz), so it lives in its own folder,
``benchmarks/.venv-quantus`` (``benchmarks/setup_quantus.sh`` installs it) and runs in a subprocess with that folder
first on its path; xbench's side runs on the project's own numpy.
"""
from __future__ import annotations

import torch

from xbench.metrics import create_metric
from xbench.models import create_model
from xbench.space import inputs_per_pass
from xbench.train import resolve_device

from _inputs import IMAGENET, digits, imagenet_sized, parser
from _quantus import run_quantus
from _timing import timed


def ours_vs_bare(model, space, x, maps, device, step=None):
    """(seconds for deletion + insertion, seconds for the bare forward passes of the same inputs, metrics)."""
    metrics = [create_metric(m, space, step=step) for m in ("deletion", "insertion")]
    ours, _ = timed(lambda: [m(model, x, None, maps) for m in metrics], device)
    n_points = metrics[0].protocol(tuple(x.shape[1:]))["n_points"]
    per_pass = inputs_per_pass(metrics[0].params["batch_size"], tuple(x.shape[1:]), x.device)
    images = max(1, per_pass // n_points)  # the metric scores whole images per pass, as many as fit
    size = images * n_points
    total = len(x) * n_points
    # a few distinct ready-made batches, cycled, so the bare passes do not run from a cache-warm single tensor
    pool = [x[(torch.arange(size, device=x.device) * 7 + k) % len(x)] for k in range(4 if size * x[0].numel() < 2e7
                                                                                   else 1)]

    def bare():
        with torch.no_grad():
            for _ in range(2):  # deletion and insertion
                model(x)  # the clean pass that fixes the tracked class
                for i, s in enumerate(range(0, total, size)):
                    model(pool[i % len(pool)][: min(size, total - s)])

    bare_s, _ = timed(bare, device)
    return ours, bare_s, metrics, n_points


QUANTUS_CODE = r"""
import json, sys, time, numpy as np, torch, quantus
state = torch.load(sys.argv[1], weights_only=False)
model = state["model"].eval()
x, maps, y, step = state["x"].numpy(), state["maps"].numpy()[:, None], state["y"].numpy(), state["step"]
metric = quantus.PixelFlipping(features_in_step=step, perturb_baseline=state.get("baseline", "black"),
                               return_auc_per_sample=False,
                               abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
t = time.perf_counter()
curves = metric(model=model, x_batch=x, y_batch=y, a_batch=maps, device="cpu", batch_size=state.get("batch", 256),
                softmax=True,
                channel_first=True)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "curves": np.asarray(curves, dtype=float).tolist(),
                  "numpy": np.__version__, "quantus": quantus.__version__}))
"""


def quantus_224(model, space, x, device, step: int) -> list[str]:
    """Lines of the side-by-side at 3×H×W: our deletion (zero substrate, ``step`` whole pixels per step) against
    Quantus PixelFlipping (baseline 0.0 = the same zero substrate, softmax of the clean prediction, same order).

    Quantus ranks channel values (the map broadcast over channels), so ``features_in_step=step`` flips a third of a
    whole-pixel step: 3× the points and the forward passes for the same whole-pixel curve, whose points are
    Quantus's every third one. The map is a random permutation (no ties: argsort orders agree without a tie-break).
    """
    n, c, h, w = x.shape
    g = torch.Generator().manual_seed(3)
    maps = torch.stack([torch.randperm(h * w, generator=g) for _ in range(n)]).float().view(n, h, w) / (h * w)
    dele = create_metric("deletion", space, substrate="zero", step=step)
    ours, _ = timed(lambda: dele(model, x, None, maps.to(device)), device)
    with torch.no_grad():
        cls = model(x).argmax(1)
    q, why = run_quantus(QUANTUS_CODE, {"model": model.cpu(), "x": x.cpu(), "maps": maps, "y": cls.cpu(),
                                        "step": step, "baseline": 0.0, "batch": n}, threads=torch.get_num_threads())
    model.to(device)
    if q is None:
        return [f"Quantus: {why}"]
    qc = torch.tensor(q["curves"])  # [n, c·h·w/step]
    oc = torch.from_numpy(dele.details["curves"])  # [n, h·w/step + 1], clean point first
    diff = float((qc[:, c - 1::c] - oc[:, 1:]).abs().max())
    ours_pts, q_pts = oc.shape[1], qc.shape[1]
    return [f"Quantus {q['quantus']} PixelFlipping vs xbench deletion (zero substrate, softmax of the clean "
            f"prediction), {n} images {c}×{h}×{w}, steps of {step} pixels; {device} for ours, CPU for Quantus, "
            f"{torch.get_num_threads()} threads",
            "| | curve points | forward passes (images) | total s | ms per curve point | ratio |",
            "|---|---|---|---|---|---|",
            f"| xbench deletion | {ours_pts} (clean + {ours_pts - 1} whole-pixel steps) | {n * ours_pts} | "
            f"{ours:.2f} | {1000 * ours / (n * ours_pts):.0f} | 1.00 |",
            f"| Quantus PixelFlipping | {q_pts} ({step} channel values each) | {n * q_pts} | {q['seconds']:.2f} | "
            f"{1000 * q['seconds'] / (n * q_pts):.0f} | total **{q['seconds'] / ours:.2f}×**, per point "
            f"**{(q['seconds'] / q_pts) / (ours / ours_pts):.2f}×** |",
            f"max |curve difference| at the {ours_pts - 1} whole-pixel points (Quantus's points {c}, {2 * c}, …): {diff:.2e}"]


def main() -> None:
    args = parser(__doc__, 256).parse_args()
    device = resolve_device(args.device)
    data, x, _, maps = digits(args.images, device)
    lenet = create_model("lenet").to(device).eval()
    rows = []
    ours, bare, metrics, n_points = ours_vs_bare(lenet, data.space, x, maps, device)
    rows.append(("lenet · mnist10k 1×28×28", n_points, ours, bare))
    big = create_model("lenet", (3, 224, 224), 10).to(device).eval()
    xb, mb = imagenet_sized(len(x), device)
    ours_b, bare_b, _, n_b = ours_vs_bare(big, IMAGENET, xb, mb, device, step=224 * 8)  # RISE's batch protocol
    rows.append(("lenet · 3×224×224 (step 1792)", n_b, ours_b, bare_b))
    print(f"device: {device}; {len(x)} images; deletion + insertion; forward passes = 2 × images × points (+ clean)")
    print("| model · input | points per curve | ours s | bare forwards s | ours ÷ bare (target ≤ 1.25) |")
    print("|---|---|---|---|---|")
    for name, pts, o, b in rows:
        print(f"| {name} | {pts} | {o:.2f} | {b:.2f} | **{o / b:.2f}** |")
    if args.no_quantus:
        return
    # Quantus PixelFlipping ~ our deletion with the 'black' substrate (Quantus: the sample's minimum = black on
    # MNIST), same order, same step, same softmax score; it has no clean point and no insertion.
    step = metrics[0].protocol((1, 28, 28))["step"]
    dele = create_metric("deletion", data.space, substrate="black", step=step)
    ours_del, _ = timed(lambda: dele(lenet, x, None, maps), device)
    with torch.no_grad():
        cls = lenet(x).argmax(1)
    q, why = run_quantus(QUANTUS_CODE, {"model": lenet.cpu(), "x": x.cpu(), "maps": maps.cpu(), "y": cls.cpu(), "step": step})
    if q is None:
        print(f"\nQuantus: {why}")
        return
    qc = torch.tensor(q["curves"])
    oc = torch.from_numpy(dele.details["curves"])[:, 1:]
    frac = torch.from_numpy(dele.details["fractions"])
    ours_auc = torch.trapezoid(torch.from_numpy(dele.details["curves"]), frac, dim=1)
    q_auc = torch.trapezoid(torch.cat([torch.from_numpy(dele.details["curves"])[:, :1], qc], 1), frac, dim=1)
    print(f"\nQuantus {q['quantus']} (numpy {q['numpy']}) PixelFlipping vs xbench deletion, lenet · mnist10k, "
          f"{len(x)} images, {qc.shape[1]} steps of {step} pixels (CPU)")
    print("| | seconds | ratio |\n|---|---|---|")
    print(f"| xbench deletion (black substrate) | {ours_del:.2f} | 1.00 |")
    print(f"| Quantus PixelFlipping | {q['seconds']:.2f} | **{q['seconds'] / ours_del:.1f}×** slower |")
    print(f"max |curve difference| {float((qc - oc).abs().max()):.2e}; RISE-formula AUC from Quantus's curve vs ours: "
          f"max |Δ| {float((q_auc - ours_auc).abs().max()):.2e}, mean AUC {float(ours_auc.mean()):.4f}")


if __name__ == "__main__":
    main()
