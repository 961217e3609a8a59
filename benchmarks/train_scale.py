"""Training at scale: `xbench train` images/s at 1 and 2 gloo processes (CPU), Bort's cost per step on timm models
(Bort-S ÷ SGD, Bort-L ÷ LAMB; target ≤ 1.10), and on a GPU resnet50 bf16 `xbench train` ÷ a bare loop (≥ 0.95)
and Bort's cost per step at ImageNet size.

    python benchmarks/train_scale.py [--repeats 10] [--skip-scaling] [--skip-overhead] [--skip-gpu] [--gpu-images N]

Scaling: timm resnet18 on generated 3×32×32 data (512 images, global batch 64), epoch 2's seconds from each run's
log; one process with one thread, one process with two, and torchrun with two processes of one thread each
(``--parallel data``). Overhead: batch 32 at 3×32×32, base and Bort steps interleaved, median. GPU: resnet50 at
224×224, batch 256, bf16 autocast, channels-last, SGD; the bare loop is the same model, optimizer and batches (the
same uint8 images moved and normalised on the GPU) and nothing else.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from _timing import timed

ROOT = Path(__file__).resolve().parents[1]
SCALE_ARGS = ["--model", "timm:resnet18", "--data", "fake:3x32x32", "--data-arg", "n_train=512", "--data-arg",
              "n_heldout=8", "--opt", "sgd", "--seeds", "0", "--epochs", "2", "--batch-size", "64", "--quiet",
              "--device", "cpu"]


def _images_per_s(out: Path) -> float:
    log = next(out.glob("*/train_log.csv"))
    rows = list(csv.DictReader(open(log)))
    return 512 / float(rows[-1]["seconds"])


def scaling() -> list[tuple[str, float]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, threads, launcher in [("1 process × 1 thread", "1", []), ("1 process × 2 threads", "2", []),
                                         ("2 processes (torchrun, gloo) × 1 thread", "1",
                                          ["-m", "torch.distributed.run", "--nproc_per_node", "2"])]:
            out = Path(tmp) / label.replace(" ", "_")
            cmd = [sys.executable, *launcher, "-m", "xbench", "train", *SCALE_ARGS, "--out", str(out),
                   *(["--parallel", "data"] if launcher else [])]
            subprocess.run(cmd, check=True, env={**env, "OMP_NUM_THREADS": threads}, capture_output=True)
            rows.append((label, _images_per_s(out)))
    return rows


def _step(model, opt, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def _bort_ratios(names, build, step, device, repeats: int, warmup: int) -> list[tuple]:
    """Bort ÷ base per step: twins of each model (same seed and init), stepped in turn; medians after ``warmup``."""
    from xbench.optim import create_optimizer

    rows = []
    for name in names:
        for base, bort, lr in (("sgd", "bort-s", 0.05), ("lamb", "bort-l", 0.005)):
            pair = {}
            for opt_name in (base, bort):
                torch.manual_seed(0)
                model = build(name)
                pair[opt_name] = (model, create_optimizer(opt_name, model, lr=lr, weight_decay=0.01))
            times = {k: [] for k in pair}
            for i in range(repeats + warmup):
                for k, (model, opt) in pair.items():
                    t, _ = timed(lambda: step(model, opt), device)
                    if i >= warmup:
                        times[k].append(t)
            tb, tx = statistics.median(times[base]), statistics.median(times[bort])
            rows.append((name.split(":")[1], f"{bort} ÷ {base}", tb * 1e3, tx * 1e3, tx / tb))
    return rows


def overhead(repeats: int) -> list[tuple]:
    """Bort ÷ base per step on the CPU, batch 32 at 3×32×32."""
    from xbench.models import create_model

    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    return _bort_ratios(("timm:resnet18", "timm:deit_tiny_patch16_224"), lambda n: create_model(n, (3, 32, 32), 10),
                        lambda model, opt: _step(model, opt, x, y), torch.device("cpu"), repeats, warmup=2)


def gpu_overhead(repeats: int, batch: int = 128) -> list[tuple]:
    """Bort ÷ base per step on the GPU at ImageNet size (224², bf16 autocast, channels-last)."""
    from xbench.models import create_model

    dev = torch.device("cuda")
    x = torch.randn(batch, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)

    def build(name):
        return create_model(name, (3, 224, 224), 1000).to(dev).to(memory_format=torch.channels_last)

    def step(model, opt):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _bort_ratios(("timm:resnet50", "timm:deit_small_patch16_224"), build, step, dev, repeats, warmup=3)


def gpu(n_images: int, batch: int = 256, repeats: int = 3) -> tuple[float, float]:
    """(xbench train images/s, bare loop images/s): the best epoch of ``repeats`` after one warm-up epoch each."""
    from xbench.data import create_dataset
    from xbench.models import create_model
    from xbench.optim import create_optimizer
    from xbench.train import train, epoch_order

    dev = torch.device("cuda")
    common = dict(lr=0.05, weight_decay=2e-5)
    with tempfile.TemporaryDirectory() as tmp:
        train(model="timm:resnet50", data="fake:3x224x224", opt="sgd", seeds=[0], epochs=repeats + 1,
              batch_size=batch, out=tmp, progress=False, amp="bf16", channels_last=True,
              data_kwargs={"n_train": n_images, "n_heldout": 1}, momentum=0.9, **common)
        rows = list(csv.DictReader(open(next(Path(tmp).glob("*/train_log.csv")))))
    xbench = n_images / min(float(r["seconds"]) for r in rows[1:])
    data = create_dataset("fake:3x224x224", n_train=n_images, n_heldout=1)
    torch.manual_seed(0)
    model = create_model("timm:resnet50", (3, 224, 224), 10).to(dev).to(memory_format=torch.channels_last)
    opt = create_optimizer("sgd", model, momentum=0.9, **common)
    images, labels, space = data.train.images, data.train.labels, data.space

    def epoch(e: int) -> None:
        for idx in epoch_order(0, e, n_images).split(batch):
            x = space.to_input(images[idx].to(dev, non_blocking=True).float().div_(255.0))
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), labels[idx].to(dev, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    model.train()
    epoch(0)
    bare = n_images / min(timed(lambda: epoch(e), dev)[0] for e in range(1, repeats + 1))
    return xbench, bare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--gpu-images", type=int, default=4096)
    ap.add_argument("--skip-gpu", action="store_true")
    args = ap.parse_args()
    if not args.skip_scaling:
        rows = scaling()
        print("xbench train, timm resnet18, 3×32×32, global batch 64, 512 images, epoch 2 (CPU)")
        print("| placement | images/s |\n|---|---|")
        for label, ips in rows:
            print(f"| {label} | {ips:.1f} |")
        print(f"scaling efficiency, 2 processes ÷ (2 × 1 process of 1 thread): **{rows[2][1] / (2 * rows[0][1]):.2f}**")
    if not args.skip_overhead:
        print(f"\nBort per step, batch 32, 3×32×32, median of {args.repeats} interleaved steps (CPU)")
        print("| model | ratio | base ms/step | Bort ms/step | Bort ÷ base |\n|---|---|---|---|---|")
        for r in overhead(args.repeats):
            print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | **{r[4]:.3f}** |")
    if torch.cuda.is_available() and not args.skip_gpu:
        xb, bare = gpu(args.gpu_images)
        print(f"\n{torch.cuda.get_device_name()}: timm resnet50, bf16, channels-last, batch 256, SGD")
        print("| xbench train images/s | bare loop images/s | xbench ÷ bare (target ≥ 0.95) |\n|---|---|---|")
        print(f"| {xb:.0f} | {bare:.0f} | **{xb / bare:.3f}** |")
        print(f"\nBort per step on the GPU, batch 128, 224×224, bf16, median of {args.repeats} interleaved steps")
        print("| model | ratio | base ms/step | Bort ms/step | Bort ÷ base |\n|---|---|---|---|---|")
        for r in gpu_overhead(args.repeats):
            print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | **{r[4]:.3f}** |")


if __name__ == "__main__":
    main()
