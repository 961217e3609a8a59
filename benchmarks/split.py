"""Seeds 002 and 003 in one run: the split interpreters ÷ a plain gradient, and each training objective ÷ erm.

    python benchmarks/split.py [--device auto] [--images 32] [--repeats 5]

Table 1: ms per image of split_grad, split_cam, split_lrp and Grad-CAM, each also as a ratio to the plain input
gradient of the same logit (one forward + one backward; target: split_grad ≤ 3×). Models: lenet and acnn_small
(width 0.25) on mnist10k digits, tv:resnet18 (random weights, eval batch norm) on 64×64 colour noise.
Table 2: one training step (objective + backward + SGD step, lenet, batch 256 of mnist10k) of every objective at
its defaults, plus the iterative variants at 3 steps, as a ratio to erm's step. Medians of ``--repeats`` rounds,
every method timed once per round (interleaved).
"""
from __future__ import annotations

import argparse
import statistics

import torch

from xbench.data import create_dataset
from xbench.interpreters import create_interpreter
from xbench.models import create_model
from xbench.objectives import OBJECTIVES, create_objective
from xbench.train import resolve_device

from _timing import timed

INTERPS = ("split_grad", "split_cam", "split_lrp", "gradcam")


def interleaved(fns: dict, device, repeats: int) -> dict:
    """Median seconds of each function, timed round-robin (one call of each per round) so that load that comes and
    goes on a shared machine falls on every function alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, device)[0])
    return {name: statistics.median(t) for name, t in times.items()}


def plain_gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)[0]


def interpreter_table(data, device, n, repeats) -> None:
    x, _ = data.inputs("heldout", range(n), device)
    colour = torch.randn(n, 3, 64, 64, device=device)
    models = {"lenet": (create_model("lenet"), x), "acnn_small(w0.25)": (create_model("acnn_small", width=0.25), x),
              "tv:resnet18 (64²)": (create_model("tv:resnet18", (3, 64, 64), 10), colour)}
    rows = {}
    for mname, (model, inputs) in models.items():
        torch.manual_seed(0)
        model = model.to(device).eval()
        target = model(inputs).argmax(1)
        fns = {"plain gradient": lambda m=model, i=inputs, t=target: plain_gradient(m, i, t)}
        for name in INTERPS:
            interp = create_interpreter(name, model, data.space)
            fns[name] = lambda a=interp.attribute, i=inputs, t=target: a(i, t)
        times = interleaved(fns, device, repeats)
        rows[mname] = {name: (t, t / times["plain gradient"]) for name, t in times.items()}
    print(f"device: {device}; {n} images per call; ms per image (÷ plain gradient)")
    print("| method | " + " | ".join(models) + " |\n|---|" + "---|" * len(models))
    for name in ("plain gradient", *INTERPS):
        cells = [f"{rows[m][name][0] / n * 1000:.2f} ({rows[m][name][1]:.2f}×)" for m in models]
        print(f"| {name} | " + " | ".join(cells) + " |")


def objective_table(data, device, repeats) -> None:
    torch.manual_seed(0)
    model = create_model("lenet").to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every step sees the same weights
    x, y = data.inputs("train", range(256), device)
    variants = [(name, {}) for name in OBJECTIVES.list()]
    variants += [(name, {"steps": 3}) for name in OBJECTIVES.list("adv-*") if "steps" in OBJECTIVES.settings(name)]
    fns = {}
    for name, kw in variants:
        objective = create_objective(name, data.space, **kw)

        def step(objective=objective):
            loss, _ = objective(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        fns[(name, kw.get("steps", 1 if "steps" in OBJECTIVES.settings(name) else "-"))] = step
    times = interleaved(fns, device, repeats)
    erm = times[("erm", "-")]
    print(f"\ntraining step, lenet, batch 256 of mnist10k: erm {erm * 1000:.1f} ms")
    print("| method | attack steps | ms per step | ÷ erm |\n|---|---|---|---|")
    for (name, steps), t in times.items():
        print(f"| {name} | {steps} | {t * 1000:.1f} | **{t / erm:.2f}** |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    device = resolve_device(args.device)
    data = create_dataset("mnist10k")
    interpreter_table(data, device, args.images, args.repeats)
    objective_table(data, device, args.repeats)


if __name__ == "__main__":
    main()
