"""Interpreters and metrics at ImageNet scale: the Table-3 matrix on tv:resnet18 at 3×224², deletion + insertion ÷
the bare forward passes they need, XRAI's time split, and evaluate at 2 processes ÷ 1 (torchrun, gloo).

    python benchmarks/scale.py [--device auto] [--images 4] [--full] [--quantus-images 8] [--parts ...]

Random weights (speed does not depend on training). Without ``--full`` the interpreters run at reduced settings
so that the whole script fits a few CPU minutes (printed with the table); ``--full`` uses every default and
32 images, the issue's setting, for a machine with a GPU.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from xbench.data.sources import IMAGENET_SPACE
from xbench.interpreters import MISSION, create_interpreter
from xbench.interpreters import segments
from xbench.metrics import create_metric
from xbench.models import create_model
from xbench.train import resolve_device

from _timing import timed
from perturbation import ours_vs_bare, quantus_224

REDUCED = {"ig": {"n_steps": 16}, "rise": {"n_masks": 256}, "xrai": {"steps": 16},
           "guided_ig": {"x_steps": 10}, "sat": {"k": 16}}
STEP = 224 * 8  # 28 curve points of 1,792 pixels
PARTS = ("matrix", "bare", "quantus", "xrai", "evaluate")


def matrix(model, x, device, settings) -> list[tuple]:
    target = model(x).argmax(1)
    rows = []
    metrics = {m: create_metric(m, IMAGENET_SPACE, step=STEP) for m in ("deletion", "insertion")}
    for name in MISSION:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interp = create_interpreter(name, model, IMAGENET_SPACE, **settings.get(name, {}))
        t_maps, maps = timed(lambda: interp.attribute(x, target), device)
        cells = [t_maps / len(x)]
        for metric in metrics.values():
            t, _ = timed(lambda: metric(model, x, None, maps), device)
            cells.append(t / len(x))
        rows.append((name, *cells))
    return rows


def xrai_split(model, x, device) -> tuple[float, float]:
    """(segmentation ms/image cold, in workers; the rest ms/image with segments cached)."""
    os.environ["XBENCH_CACHE"] = "off"
    segments._MEMORY.clear()
    from xbench.interpreters._pair import to_hwc

    pixels = [to_hwc(p) for p in IMAGENET_SPACE.to_pixels(x)]
    t_seg = time.perf_counter()
    segments.segments_many(pixels, workers=0)
    t_seg = time.perf_counter() - t_seg
    interp = create_interpreter("xrai", model, IMAGENET_SPACE, **REDUCED["xrai"])
    t_rest, _ = timed(lambda: interp.attribute(x), device)
    return 1000 * t_seg / len(x), 1000 * t_rest / len(x)


def evaluate_scaling(n: int) -> tuple[float, float]:
    """Seconds of one evaluate process and of two under torchrun, same job, fresh caches."""
    from xbench.importer import import_model

    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    torch.save(create_model("lenet").state_dict(), tmp / "w.pt")
    run = Path(import_model("lenet", str(tmp / "w.pt"), "mnist10k", out=tmp / "ckpt", device="cpu")["run_dir"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    times = []
    for launcher in ([sys.executable, "-m", "xbench"],
                     [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "xbench"]):
        r = tmp / f"r{len(times)}"
        shutil.copytree(run, r / run.name)
        args = ["evaluate", "--runs", str(r / run.name), "--interp", "cam,sat,ig", "--metric", "deletion,insertion",
                "--n-examples", str(n), "--batch-size", "32", "--device", "cpu", "--quiet", "--out", str(r / "out")]
        t = time.perf_counter()
        subprocess.run(launcher + args, check=True, env=env, capture_output=True)
        times.append(time.perf_counter() - t)
    shutil.rmtree(tmp)
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--full", action="store_true", help="every interpreter at its defaults, 32 images")
    ap.add_argument("--eval-n", type=int, default=128, help="held-out images for the evaluate scaling run")
    ap.add_argument("--quantus-images", type=int, default=8, help="images for the Quantus side by side (the "
                    "issue's setting: 32; Quantus runs 3× the forward passes, about 1 CPU-minute per image here)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours and the bare passes (best "
                    "of each: a shared machine's load only adds time)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); 1 keeps the "
                    "ratios steady on a loaded machine")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    n = 32 if args.full else args.images
    settings = {} if args.full else REDUCED
    torch.manual_seed(0)
    model = create_model("tv:resnet18", (3, 224, 224), 1000).to(device).eval()
    g = torch.Generator().manual_seed(1)
    x = IMAGENET_SPACE.to_input(torch.rand(n, 3, 224, 224, generator=g).to(device))
    print(f"tv:resnet18 (random weights), 3x224x224, {n} images, {device}, {torch.get_num_threads()} threads; "
          f"settings: {settings or 'defaults'}")
    if "matrix" in parts:
        print("| interpreter | maps s/img | + deletion s/img | + insertion s/img |\n|---|---|---|---|")
        for name, *cells in matrix(model, x, device, settings):
            print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    maps = torch.rand(n, 224, 224, generator=g).to(device)
    if "bare" in parts:
        runs = [ours_vs_bare(model, IMAGENET_SPACE, x, maps, device, step=STEP) for _ in range(args.rounds)]
        ours, bare, pts = min(r[0] for r in runs), min(r[1] for r in runs), runs[0][3]
        print(f"\ndeletion + insertion, {pts} points per curve (bare: the clean pass + every point), best of "
              f"{args.rounds} alternating rounds: ours {ours:.2f} s, bare forwards {bare:.2f} s, ours ÷ bare "
              f"**{ours / bare:.2f}** (target ≤ 1.10; per round: {', '.join(f'{r[0] / r[1]:.2f}' for r in runs)})")
    if "quantus" in parts and args.quantus_images > 0:
        xq = IMAGENET_SPACE.to_input(torch.rand(args.quantus_images, 3, 224, 224, generator=g).to(device))
        print("\n" + "\n".join(quantus_224(model, IMAGENET_SPACE, xq, device, STEP)))
    if "xrai" in parts:
        seg, rest = xrai_split(model, x, device)
        print(f"XRAI ({REDUCED['xrai']}): segmentation {seg:.0f} ms/image (cold, joblib workers), "
              f"the rest {rest:.0f} ms/image (segments cached)")
    if "evaluate" in parts and device.type == "cpu":
        one, two = evaluate_scaling(args.eval_n)
        print(f"evaluate lenet · mnist10k, cam,sat,ig × deletion,insertion, n={args.eval_n}: 1 process {one:.1f} s, "
              f"2 processes (torchrun, gloo) {two:.1f} s, 2 ÷ 1 = **{two / one:.2f}** (whole commands, start-up "
              f"included; {os.cpu_count()} CPU cores)")

if __name__ == "__main__":
    main()
