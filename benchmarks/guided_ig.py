"""Guided IG, seconds per image: torch (batched, on the device) ÷ PAIR (numpy, one image per call), equal steps.

    python benchmarks/guided_ig.py [--device auto] [--images 4] [--steps 25] [--size 224] [--threads 0]

Model: tv:resnet18 with random weights (speed does not depend on training), 3×size² inputs, upstream Bort's
setting (fraction 0.5, max_dist 1.0). PAIR runs on the CPU path of its adapter (one image per gradient call);
both are timed over the same images and the largest relative map difference is printed beside the ratio.
"""
from __future__ import annotations

import argparse

import torch

from xbench.interpreters import create_interpreter
from xbench.models import create_model
from xbench.data.sources import IMAGENET_SPACE
from xbench.train import resolve_device

from _timing import timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); on a machine "
                    "shared with other work, 1 avoids threads waiting for each other at every op")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = create_model("tv:resnet18", (3, args.size, args.size), 1000).to(device).eval()
    x = IMAGENET_SPACE.to_input(torch.rand(args.images, 3, args.size, args.size, device=device))
    target = model(x).argmax(1)
    kw = dict(x_steps=args.steps, fraction=0.5, max_dist=1.0)
    ours = create_interpreter("guided_ig", model, IMAGENET_SPACE, **kw)
    ref = create_interpreter("guided_ig", model, IMAGENET_SPACE, backend="pair", **kw)
    ours.attribute(x[:1], target[:1])  # warm-up
    t_ours, a = timed(lambda: ours.attribute(x, target), device)
    t_ref, b = timed(lambda: ref.attribute(x, target), device)
    rel = float((a - b).abs().max() / b.abs().max())
    print(f"Guided IG on tv:resnet18, 3x{args.size}x{args.size}, {args.images} images, {args.steps} steps, {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"| backend | s/image |\n|---|---|\n| torch (batched) | {t_ours / len(x):.3f} |\n"
          f"| PAIR | {t_ref / len(x):.3f} |")
    print(f"PAIR ÷ torch: {t_ref / t_ours:.2f}x   (max |diff| / max |map| = {rel:.1e}, float32 gradients)")


if __name__ == "__main__":
    main()
