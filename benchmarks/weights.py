"""Seed 004's faithfulness batched ÷ one model copy per zeroed row (target ≥ 10× faster, mlp 4×300), max_sensitivity
÷ its bare explain calls (target ≤ 1.25), and Quantus 0.6.0's Sparseness / Complexity / MaxSensitivity beside ours
on the same maps and, for MaxSensitivity, the same noise (time ratio and max value difference).

    python benchmarks/weights.py [--device auto] [--images 64] [--no-quantus]

Quantus runs in a subprocess with ``benchmarks/.venv-quantus`` (``setup_quantus.sh``: its own numpy < 2.4) first on
its path, as in ``perturbation.py``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from xbench.interpreters import create_interpreter
from xbench.layers import constrained_weights
from xbench.metrics import create_metric
from xbench.models import create_model
from xbench.train import resolve_device

from _inputs import digits, parser
from _quantus import run_quantus
from _timing import timed


def faithfulness_rows(model, x, y, device):
    """(batched seconds, one-copy-per-row seconds, max |difference| of the risk increases)."""
    metric = create_metric("faithfulness")
    ours, _ = timed(lambda: metric(model, x, y), device)

    def copies():
        with torch.no_grad():
            base = F.cross_entropy(model(x), y)
            out = []
            for name, w in constrained_weights(model):
                for i in range(w.shape[0]):
                    twin = copy.deepcopy(model)
                    dict(twin.named_modules())[name].weight[i] = 0
                    out.append(F.cross_entropy(twin(x), y) - base)
            return torch.stack(out)

    loop, u = timed(copies, device)
    return ours, loop, float((torch.from_numpy(metric.details["risk_increase"]) - u.cpu()).abs().max())


def sensitivity_vs_bare(model, space, x, maps, interp, device, k=10, batch_size=256):
    """(max_sensitivity seconds, bare explain seconds on the same perturbed inputs and batches, scores)."""
    metric = create_metric("max_sensitivity", space, n_samples=k, batch_size=batch_size)
    ours, scores = timed(lambda: metric(model, x, None, maps, explain=interp.attribute)["max_sensitivity"], device)
    with torch.no_grad():
        target = model(x).argmax(1).repeat_interleave(k)
    xs = x.repeat_interleave(k, 0) + 0.01 * torch.randn(len(x) * k, *x.shape[1:], device=x.device)
    per_group = max(1, batch_size // k) * k
    bare, _ = timed(lambda: [interp.attribute(xs[s:s + min(batch_size, per_group)], target[s:s + min(batch_size, per_group)])
                             for s in range(0, len(xs), min(batch_size, per_group))], device)
    return ours, bare, scores, metric


QUANTUS_CODE = r"""
import json, sys, time, numpy as np, torch, quantus
from xbench.interpreters import create_interpreter
s = torch.load(sys.argv[1], weights_only=False)
model, space = s["model"].eval(), s["space"]
x, maps, y, noise, k = s["x"].numpy(), s["maps"].numpy()[:, None], s["y"].numpy(), s["noise"].numpy(), s["k"]
interp = create_interpreter(s["interp"], model, space)
def explain(model, inputs, targets, **kw):
    return interp.attribute(torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()[:, None]
step = [0]
def perturb(arr, indices, **kw):  # xbench's own noise, sample by sample, in input space
    out = arr + noise[:, step[0]].reshape(arr.shape)
    step[0] += 1
    return out
res = {"numpy": np.__version__, "quantus": quantus.__version__}
for name, metric in (("sparseness", quantus.Sparseness(abs=True, normalise=False, disable_warnings=True)),
                     ("complexity", quantus.Complexity(abs=True, normalise=False, disable_warnings=True))):
    t = time.perf_counter()
    v = metric(model=model, x_batch=x, y_batch=y, a_batch=maps.copy(), device="cpu", channel_first=True)
    res[name] = {"seconds": time.perf_counter() - t, "values": np.asarray(v, dtype=float).tolist()}
ms = quantus.MaxSensitivity(nr_samples=k, perturb_func=perturb, normalise=False, abs=False, disable_warnings=True,
                            display_progressbar=False)
t = time.perf_counter()
v = ms(model=model, x_batch=x, y_batch=y, a_batch=maps.copy(), device="cpu", explain_func=explain, channel_first=True,
       batch_size=len(x))
res["max_sensitivity"] = {"seconds": time.perf_counter() - t, "values": np.asarray(v, dtype=float).tolist()}
print(json.dumps(res))
"""


def main() -> None:
    args = parser(__doc__, 64).parse_args()
    device = resolve_device(args.device)
    data, x, y, _ = digits(256, device)
    mlp = create_model("mlp", shape="4x300", init_std=0.1).to(device).eval()
    ours_f, loop_f, diff_f = faithfulness_rows(mlp, x, y, device)
    print(f"device: {device}\n\n| benchmark | ours s | reference s | ratio | target |\n|---|---|---|---|---|")
    print(f"| faithfulness, mlp 4×300, 1210 rows, 256 images (max |Δu| {diff_f:.1e}) | {ours_f:.2f} | "
          f"{loop_f:.2f} (one model copy per row) | **{loop_f / ours_f:.1f}× faster** | ≥ 10× |")
    lenet = create_model("lenet").to(device).eval()
    xs = x[: args.images]
    for name in ("guided_backprop", "ig"):
        interp = create_interpreter(name, lenet, data.space)
        with torch.no_grad():
            pred = lenet(xs).argmax(1)
        maps = interp.attribute(xs, pred)
        ours, bare, scores, metric = sensitivity_vs_bare(lenet, data.space, xs, maps, interp, device)
        print(f"| max_sensitivity, lenet · {name}, {len(xs)} images × 10 copies | {ours:.2f} | {bare:.2f} (bare "
              f"explain calls) | **{ours / bare:.2f}** | ≤ 1.25 |")
    if args.no_quantus:
        return
    ours_sp, sp = timed(lambda: create_metric("sparseness")(lenet, xs, None, maps)["sparseness"], device)
    ours_cx, cx = timed(lambda: create_metric("complexity")(lenet, xs, None, maps)["complexity"], device)
    k = 10
    noise = torch.stack([metric._noise((k, *xs.shape[1:]), i) for i in range(len(xs))]) / data.space.std[0]
    q, why = run_quantus(QUANTUS_CODE, {"model": lenet.cpu(), "space": data.space, "x": xs.cpu(), "maps": maps.cpu(), "y": pred.cpu(),
                           "noise": noise, "k": k, "interp": "ig"})
    if q is None:
        print(f"\nQuantus: {why}")
        return
    print(f"\nQuantus {q['quantus']} (numpy {q['numpy']}) vs xbench, lenet · mnist10k, {len(xs)} IG maps, CPU")
    print("| metric | xbench s | Quantus s | Quantus ÷ xbench | max |value difference| |\n|---|---|---|---|---|")
    for name, t, v in (("Sparseness", ours_sp, sp), ("Complexity", ours_cx, cx), ("MaxSensitivity (same noise)", ours,
                                                                                   scores)):
        qv = q[name.split()[0].lower().replace("maxsensitivity", "max_sensitivity")]
        d = float((torch.tensor(qv["values"]) - v.double()).abs().max())
        print(f"| {name} | {t:.3f} | {qv['seconds']:.3f} | {qv['seconds'] / t:.1f}× | {d:.1e} |")


if __name__ == "__main__":
    main()
