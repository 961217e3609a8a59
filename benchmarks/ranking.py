"""road ÷ its bare forward passes (28² and 224²), srg ÷ deletion, and our noisy-linear ROAD against Quantus 0.6.0's
(time ratio, and accuracy-curve agreement with the noise off) — one run, ratios within it.

    python benchmarks/ranking.py [--device auto] [--images 64] [--rounds 3] [--no-quantus]

Quantus runs in a subprocess on ``benchmarks/.venv-quantus`` (``setup_quantus.sh``), as in perturbation.py.
"""
from __future__ import annotations

import torch

from xbench.metrics import create_metric
from xbench.metrics.curves import ranks
from xbench.metrics.imputation import impute
from xbench.models import create_model
from xbench.space import inputs_per_pass
from xbench.train import resolve_device

from _inputs import IMAGENET, digits, imagenet_sized, parser
from _quantus import run_quantus
from _timing import timed

GRID = list(range(1, 100, 2))  # Quantus's default percentages

QUANTUS_CODE = r"""
import json, sys, time, numpy as np, torch, quantus
state = torch.load(sys.argv[1], weights_only=False)
model = state["model"].eval()
x, maps, y = state["x"].numpy(), state["maps"].numpy()[:, None], state["y"].numpy()
metric = quantus.ROAD(percentages=state["grid"], noise=0.0, abs=False, normalise=False, disable_warnings=True,
                      display_progressbar=False)
t = time.perf_counter()
acc = metric(model=model, x_batch=x, y_batch=y, a_batch=maps, device="cpu", batch_size=len(x), softmax=True,
             channel_first=True)
print(json.dumps({"seconds": time.perf_counter() - t, "acc": [float(acc[p]) for p in state["grid"]],
                  "quantus": quantus.__version__}))
"""


def bare_passes(model, x, n_inputs: int, device) -> float:
    """Seconds of the forward passes alone: the clean pass plus ``n_inputs`` inputs in passes of the metric's size."""
    size = max(1, inputs_per_pass(2048, tuple(x.shape[1:]), x.device))
    pool = x[torch.arange(min(size, n_inputs), device=x.device) % len(x)]

    def run():
        with torch.no_grad():
            model(x)
            for s in range(0, n_inputs, size):
                model(pool[: min(size, n_inputs - s)])

    return timed(run, device)[0]


def smooth(maps: torch.Tensor) -> torch.Tensor:
    """A CAM-like map: 4×4 noise upsampled bilinearly (one big hole per order: the imputation's hard case)."""
    coarse = torch.rand(len(maps), 1, 4, 4, generator=torch.Generator().manual_seed(3)).to(maps)
    return torch.nn.functional.interpolate(coarse, size=maps.shape[-2:], mode="bilinear")[:, 0]


def road_row(name, kind, model, space, x, maps, device, grid, rounds):
    """Best of ``rounds`` alternating timings of road and of its bare passes (steadier on a shared machine)."""
    metric = create_metric("road", space, percentages=",".join(map(str, grid)))
    ours, bare = [], []
    for _ in range(rounds):
        ours.append(timed(lambda: metric(model, x, None, maps), device)[0])
        bare.append(bare_passes(model, x, len(x) * 2 * len(grid), device))
    return name, kind, len(x), 2 * len(grid), min(ours), min(bare)


def our_accuracy(model, x, maps, cls, grid, device):
    """(seconds, MoRF accuracy per percentage): every image and percentage imputed in one batched solve, noise off."""
    hw = x.shape[2] * x.shape[3]

    def run():
        rank = ranks(maps, ("morf",))[:, 0].view(len(x), 1, 1, *x.shape[2:])
        counts = torch.tensor([int(hw * p / 100) for p in grid], device=x.device).view(1, -1, 1, 1, 1)
        removed = (rank < counts).flatten(0, 1)  # [N·P, 1, H, W]
        xs = x[:, None].expand(len(x), len(grid), *x.shape[1:]).flatten(0, 1)
        with torch.no_grad():
            pred = model(impute(xs, removed)).argmax(1).view(len(x), len(grid))
        return (pred == cls[:, None]).float().mean(0)

    return timed(run, device)


def main() -> None:
    ap = parser(__doc__, 64)
    ap.add_argument("--images-224", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="timings per row; the best counts (default: 3)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    data, x, _, maps = digits(args.images, device)
    lenet = create_model("lenet").to(device).eval()
    big = create_model("lenet", (3, 224, 224), 10).to(device).eval()
    resnet = create_model("tv:resnet18", (3, 224, 224), 1000).to(device).eval()
    xb, mb = imagenet_sized(args.images_224, device)
    grid9 = [10, 20, 30, 40, 50, 60, 70, 80, 90]
    rows = [road_row("lenet · 1×28×28", "uniform noise", lenet, data.space, x, maps, device, grid9, args.rounds),
            road_row("lenet · 1×28×28", "smooth", lenet, data.space, x, smooth(maps), device, grid9, args.rounds),
            road_row("lenet · 3×224×224", "uniform noise", big, IMAGENET, xb, mb, device, grid9, args.rounds),
            road_row("tv:resnet18 · 3×224×224", "uniform noise", resnet, IMAGENET, xb, mb, device, grid9, args.rounds),
            road_row("tv:resnet18 · 3×224×224", "smooth", resnet, IMAGENET, xb, smooth(mb), device, grid9, args.rounds)]
    print(f"device: {device}; road = MoRF + LeRF at 9 percentages, noisy-linear imputation (noise 0.01)")
    print("| model · input | map | images | inputs per image | road s | bare forwards s | road ÷ bare (target ≤ 1.5) |")
    print("|---|---|---|---|---|---|---|")
    for name, kind, n, per, o, b in rows:
        print(f"| {name} | {kind} | {n} | {per} | {o:.2f} | {b:.2f} | **{o / b:.2f}** |")
    dele, srg = (create_metric(m, data.space) for m in ("deletion", "srg"))
    t_del, _ = timed(lambda: dele(lenet, x, None, maps), device)
    t_srg, _ = timed(lambda: srg(lenet, x, None, maps), device)
    print(f"\nsrg ÷ deletion (zero substrate, {len(x)} images, 28²): {t_srg:.2f} s ÷ {t_del:.2f} s = "
          f"**{t_srg / t_del:.2f}** (target ≤ 2.1)")
    if args.no_quantus:
        return
    with torch.no_grad():
        cls = lenet(x).argmax(1)
    t_ours, acc = min((our_accuracy(lenet, x, maps, cls, GRID, device) for _ in range(args.rounds)),
                      key=lambda r: r[0])
    q, why = run_quantus(QUANTUS_CODE, {"model": lenet.cpu(), "x": x.cpu(), "maps": maps.cpu(), "y": cls.cpu(), "grid": GRID})
    if q is None:
        print(f"\nQuantus: {why}")
        return
    qa = torch.tensor(q["acc"])
    print(f"\nQuantus {q['quantus']} ROAD vs xbench noisy-linear imputation, lenet · mnist10k, {len(x)} images, "
          f"MoRF at {len(GRID)} percentages (1, 3, …, 99), noise off, accuracy of the clean prediction")
    print("| | seconds | ratio |\n|---|---|---|")
    print(f"| xbench (one batched CG solve + passes, {device}) | {t_ours:.2f} | 1.00 |")
    print(f"| Quantus ROAD (spsolve per image and percentage, CPU) | {q['seconds']:.2f} | "
          f"**{q['seconds'] / t_ours:.1f}×** slower |")
    print(f"accuracy curves: max |Δ| {float((qa - acc.cpu()).abs().max()):.3f} (one image = {1 / len(x):.3f}); "
          f"mean over the grid ours {float(acc.mean()):.4f}, Quantus {float(qa.mean()):.4f}")


if __name__ == "__main__":
    main()
