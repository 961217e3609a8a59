"""Score maps and models; append one flat record per (run, interpreter, metric, score, layer) to results.jsonl.

    evaluate("checkpoints/*", interps="sat", metrics="deletion,insertion", n=500)
    evaluate("checkpoints/*", metrics="recon_ratio,gram,decomposition,synthesis")

Maps come from the explain cache (``<run>/maps``) or are computed and cached. Records are appended one by one,
atomically; a re-run skips what is already there (same run, interpreter + hparams, metric + protocol, n) unless
``force``. Per-example scores and figure data go to a side file ``<out>/scores/<run>/<...>.npz`` named in the record.
"""
from __future__ import annotations

import hashlib
import io
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__, dist
from .checkpoints import CHECKPOINT_NAME
from .errors import XbenchError
from .explain import heldout_examples, maps_for, resolve_runs
from .fileio import atomic_write, check_writable, read_jsonl
from .interpreters import INTERPRETERS, create_interpreter
from .metrics import METRICS, Metric, create_metric
from .shard import append_once, from_main, over_ranks
from .train import load_run, resolve_device
from .train_config import OPTIMIZER_FIELDS, TrainConfig
from .variants import cross

RESULTS_NAME = "results.jsonl"
RUN_FIELDS = ("run_id", "pair_id", "model", "data", "opt", "seed", "epochs", "lr", "weight_decay", "momentum",
              "bort_lambda", "bort_mode", "bort_amplitude", "dbort", "model_kwargs", "method", "method_kwargs", "l1")
# the training recipe of a run: every config field but what names the arm (model, data, optimizer, method, l1) and seed;
# reports tell apart runs of one model and dataset whose recipes differ (a study may train under two)
RECIPE_FIELDS = tuple(f for f in TrainConfig.__dataclass_fields__
                      if f not in ("model", "data", "opt", "seed", "method", "l1", *OPTIMIZER_FIELDS))  # l1 names its arm


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _num(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


def run_fields(cfg: dict, run: Path) -> dict[str, Any]:
    """The identity of a run as records carry it (dataset under ``dataset``, optimizer under ``optimizer``)."""
    out = {k: cfg.get(k) for k in RUN_FIELDS}
    out["dataset"] = out.pop("data")
    out["optimizer"] = out.pop("opt")
    if not str(out["optimizer"]).startswith("bort"):
        for k in ("bort_lambda", "bort_mode", "bort_amplitude"):
            out[k] = None
    out["recipe"] = {k: cfg[k] for k in RECIPE_FIELDS if k in cfg}
    out["heldout_acc"] = cfg.get("heldout_acc")
    out["epochs_done"] = cfg.get("epochs_done")
    out["checkpoint_sha256"] = _sha256(Path(run) / CHECKPOINT_NAME)
    return out


def score_metric(metric: Metric, model, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor | None,
                 batch_size: int, explain=None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run a metric over all examples in batches: (scores per name [N] or [N,L], details)."""
    if not metric.needs_data or metric.needs_all:  # weights only, or pairs examples: one call, batched inside
        scores = metric(model, *((x, y, maps) if metric.needs_data else (x[:1], y[:1], None)), explain=explain)
        return {k: v.numpy() for k, v in scores.items()}, dict(metric.details)
    parts: dict[str, list] = {}
    details: dict[str, Any] = {}

    def one(sl: slice) -> tuple[dict, dict]:
        scores = metric(model, x[sl], y[sl], None if maps is None else maps[sl].to(x.device), explain=explain)
        return {k: v.numpy() for k, v in scores.items()}, dict(metric.details)

    for scores, batch_details in over_ranks(len(x), batch_size, one):  # batches dealt across torchrun's ranks
        for k, v in scores.items():
            parts.setdefault(k, []).append(v)
        for k, v in batch_details.items():
            if k in metric.example_details:
                details.setdefault(k, []).append(np.asarray(v))
            elif k not in details:
                details[k] = v
    for k in metric.example_details:
        if k in details:
            details[k] = np.concatenate(details[k])
    return {k: np.concatenate(v) for k, v in parts.items()}, details


def _records(base: dict, metric: Metric, scores: dict[str, np.ndarray], shape, extra: dict) -> list[dict]:
    directions = metric.score_directions()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = []
    for name, values in scores.items():
        columns = metric.layer_names if metric.level == "layer" else [""]
        values = values.reshape(len(values), -1)
        for j, layer in enumerate(columns):
            col = values[:, j].astype(float)
            ok = col[~np.isnan(col)]
            out.append({**base, **extra, "metric": metric.registry_name, "score": name, "layer": layer,
                        "level": metric.level, "category": metric.category, "higher_is_better": directions[name],
                        "metric_params": metric.protocol(shape), "metric_key": metric.key(shape),
                        "n": int(len(ok)), "n_nan": int(len(col) - len(ok)),
                        "mean": _num(ok.mean()) if len(ok) else None,
                        "std": _num(ok.std(ddof=1)) if len(ok) > 1 else None,
                        "sem": _num(ok.std(ddof=1) / np.sqrt(len(ok))) if len(ok) > 1 else None,
                        "xbench_version": __version__, "created_at": now})
    return out


def _jobs(interps: list[str], map_metrics: list[str], model_metrics: list[str], variants: dict) -> list[tuple]:
    """(interpreter or "", metric, its settings, its variant label) of one run: interpreters × map metrics, then
    model metrics, each crossed with its comma-list variants."""
    return [(i, m, *v) for i in interps for m in map_metrics for v in variants[m]] + [
        ("", m, *v) for m in model_metrics for v in variants[m]]


def _check_fits(run_dirs: list[Path], metrics: list[str], data_root: str | None) -> None:
    """A metric that cannot score some run's model at all is named before anything is written (Metric.fits)."""
    picky = [m for m in metrics if METRICS.get(m).fits.__func__ is not Metric.fits.__func__]
    for run in run_dirs if picky else []:
        model = load_run(run, "cpu", data_root)[0]
        for name in picky:
            METRICS.get(name).fits(model)


def _map_fields(info: dict) -> dict:
    """What a record says of the maps it scored."""
    return {"interp_hparams": info["interp_hparams"], "interp_backend": info["backend"],
            "maps_file": info["maps_file"], "interp_seconds_per_image": info["seconds_per_image"]}


def _save(out: Path, key: tuple, base: dict, metric: Metric, scores: dict, details: dict, extra: dict, shape,
          force: bool) -> int:
    """One job's side file and records; the count of records written (0: another writer on this --out did it)."""
    side = out / "scores" / base["run_id"] / (f"{extra['interpreter'] or 'model'}-{extra['interp_key'] or 'none'}__"
                                             f"{metric.registry_name}-{metric.key(shape)}-n{extra['n_used']}.npz")
    payload = {f"score__{k}": v for k, v in scores.items()}
    payload.update({f"detail__{k}": np.asarray(v) for k, v in details.items()})
    payload["layers"] = np.array(metric.layer_names, dtype=str)
    buf = io.BytesIO()
    np.savez_compressed(buf, **payload)
    atomic_write(side, lambda f: f.write(buf.getvalue()))
    records = _records(base, metric, scores, shape, {**extra, "scores_file": str(side.relative_to(out))})
    return len(records) if append_once(out / RESULTS_NAME, key, records, _key_of, force) else 0


def _key_of(r: dict) -> tuple:
    return _job_key(r["run_id"], r["interpreter"], r["interp_key"], r["metric"], r["metric_key"],
                    r.get("n_used", r["n_requested"]))


def _job_key(run_id: str, interp: str, interp_key: str, metric: str, metric_key: str, n: int) -> tuple:
    return (run_id, interp, interp_key, metric, metric_key, int(n))


def plan_jobs(interps: str | Iterable[str] | None = None, metrics: str | Iterable[str] | None = None, n: int = 100,
              hparams: dict[str, dict[str, Any]] | None = None) -> tuple[list[str], list[str], list[str]]:
    """(interpreters, map metrics, model metrics) of an evaluation, every name and setting checked; no file read.
    Each run gets interpreters × map metrics + model metrics jobs."""
    interp_names = INTERPRETERS.resolve(interps) if interps else []
    if metrics:
        metric_names = METRICS.resolve(metrics)
    else:  # every map metric when interpreters are given, else every model metric
        metric_names = [m for m in METRICS.list() if METRICS.get(m).needs_maps == bool(interp_names)]
    map_metrics = [m for m in metric_names if METRICS.get(m).needs_maps]
    model_metrics = [m for m in metric_names if not METRICS.get(m).needs_maps]
    if map_metrics and not interp_names:
        raise XbenchError(f"{', '.join(map_metrics)} score saliency maps: name interpreters with --interp")
    hparams = hparams or {}
    unknown = set(hparams) - set(interp_names) - set(metric_names)
    if unknown:
        raise XbenchError(f"settings given for names not asked for: {', '.join(sorted(unknown))}")
    if n < 1:
        raise XbenchError(f"--n must be at least 1, not {n}")
    for name in interp_names:  # every setting checked before any run is loaded or any file written
        INTERPRETERS.check(name, hparams.get(name, {}))
    for name in metric_names:
        for params, _ in cross(METRICS, name, hparams.get(name, {})):  # a comma list crosses into jobs
            create_metric(name, None, **params)  # constructors check more than types (road's percentage grid)
    return interp_names, map_metrics, model_metrics


def _job_fields(interp: str, ikey: str, metric_variant: str, n: int, n_used: int, device, study: dict | None) -> dict:
    """The record fields a job adds to its run's: which interpreter, examples, device and study."""
    return {"interpreter": interp, "interp_key": ikey, "interp_hparams": None, "target_rule": "prediction",
            "n_requested": n, "n_used": n_used, "device": str(device), "metric_variant": metric_variant,
            "interp_baseline": bool(interp) and INTERPRETERS.get(interp).baseline, **({"study": study} if study else {})}


def evaluate(runs: str | Path | Iterable, interps: str | Iterable[str] | None = None,
             metrics: str | Iterable[str] | None = None, n: int = 100,
             hparams: dict[str, dict[str, Any]] | None = None, out: str | Path = "reports", device: str = "auto",
             batch_size: int = 32, force: bool = False, data_root: str | None = None,
             progress: bool | None = None, study: dict | None = None, dry_run: bool = False) -> str:
    """Evaluate every run × (interpreter × map metric, and model metric); returns a short summary.

    ``study`` (the study file and its sha256, from ``xbench run``) is carried by every record; ``dry_run`` counts
    the jobs still to do and the ones done, computing and writing nothing."""
    interp_names, map_metrics, model_metrics = plan_jobs(interps, metrics, n, hparams)
    hparams = hparams or {}
    variants = {m: cross(METRICS, m, hparams.get(m, {})) for m in map_metrics + model_metrics}  # comma lists cross
    run_dirs = resolve_runs(runs)
    if not dry_run:
        check_writable(out)
    out = Path(out)
    results = out / RESULTS_NAME
    dist.init()  # under torchrun: join the group (batches of examples are dealt across ranks); else nothing
    done = from_main(lambda: {_key_of(r) for r in read_jsonl(results)})  # every rank skips the same jobs
    dev = resolve_device(device)
    _check_fits(run_dirs, map_metrics + model_metrics, data_root)
    written, skipped = 0, 0
    for run in run_dirs:
        model, data, cfg = load_run(run, dev, data_root)
        base = run_fields(cfg, run)
        examples = heldout_examples(model, data, n, dev)
        _, x, y, _ = examples
        jobs = _jobs(interp_names, map_metrics, model_metrics, variants)
        interps = {i: create_interpreter(i, model, data.space, **hparams.get(i, {})) for i in interp_names}
        loaded: dict[str, tuple] = {}
        bar = tqdm(jobs, desc=run.name, leave=False, file=sys.stderr,
                   disable=None if progress is None else not progress)
        for interp, metric_name, metric_params, metric_variant in bar:
            bar.set_postfix_str(f"{interp or 'model'} · {metric_name} {metric_variant}")
            metric = create_metric(metric_name, data.space, **metric_params)
            ikey = interps[interp].key if interp else ""
            key = _job_key(base["run_id"], interp, ikey, metric_name, metric.key(data.shape), len(x))
            if key in done and not force:
                skipped += 1
                continue
            if dry_run:  # counts what a real run would compute
                written += 1
                continue
            extra = _job_fields(interp, ikey, metric_variant, n, len(x), dev, study)
            maps = None
            if interp:  # maps of each interpreter, read (or computed) once per run
                maps, info = loaded.get(interp) or loaded.setdefault(interp, maps_for(
                    run, model, data, interp, hparams.get(interp, {}), n, dev, batch_size, False, examples))
                extra.update(_map_fields(info))
            t0 = time.perf_counter()
            scores, details = score_metric(metric, model, x, y, maps, batch_size,
                                           explain=interps[interp].attribute if metric.needs_explainer else None)
            extra["seconds"] = time.perf_counter() - t0
            done.add(key)
            if dist.is_main():  # rank 0 alone writes side files and records
                count = _save(out, key, base, metric, scores, details, extra, data.shape, force)
                written, skipped = written + count, skipped + (count == 0)
        bar.close()
    return (f"{written} job(s) to do, {skipped} already done" if dry_run
            else f"{written} record(s) written, {skipped} job(s) already done, in {results}")
