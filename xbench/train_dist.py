"""How training runs: where (torchrun placements) and how fast (mixed precision, channels-last, compile, workers).

    torchrun --nproc_per_node 4 -m xbench train ... --parallel runs   # whole runs dealt to ranks
    torchrun --nproc_per_node 8 -m xbench train ... --parallel data   # DDP, one run at a time

``runs``: rank r trains runs r, r+W, ... exactly as one process would (same files, bit for bit); the summaries are
gathered so every rank returns all of them. ``data``: every rank trains every run together under
DistributedDataParallel. ``--batch-size`` is the global batch: the run's own epoch order (seeded by the run, so
twins see the same data and resumes continue it) is cut into global batches and each rank takes every W-th example
of a batch, as ``DistributedSampler`` deals them; a short last batch is weighted so the all-reduced gradient is its
mean. The Bort term is applied by the optimizer after DDP's all-reduce, to weights that are identical on every rank.
Rank 0 alone writes checkpoints (atomically) and logs; a checkpoint holds no world size, so a run resumes under any.
"""
from __future__ import annotations

import random
from contextlib import nullcontext
from typing import Callable

import torch

from . import dist
from .data import Dataset
from .errors import XbenchError
from .settings import Setting, check

EXEC_SETTINGS = {
    "parallel": Setting("auto", "under torchrun: runs (whole runs dealt to ranks), data (DDP, one run at a time) or "
                                "auto (runs when there are at least as many runs as ranks)",
                        choices=("auto", "runs", "data")),
    "dist_backend": Setting("auto", "torch.distributed backend: auto (nccl on CUDA, else gloo), gloo or nccl",
                            choices=dist.BACKENDS),
    "sync_bn": Setting(False, "--parallel data: batch norm over the global batch (SyncBatchNorm)"),
    "channels_last": Setting(False, "channels-last memory format for model and inputs (faster convs on GPUs)"),
    "compile": Setting(False, "torch.compile the model for training (first epoch pays the compile time)"),
    "workers": Setting(0, "DataLoader worker processes for image folders and augmentation (pinned memory on CUDA)",
                       range="[0, inf)"),
}


def check_execution(given: dict) -> dict:
    return check("train", EXEC_SETTINGS, given)


def placement(parallel: str, n_runs: int, world: int) -> str:
    """'serial' without torchrun (world 1), else 'runs' or 'data'."""
    if world == 1:
        return "serial"
    if parallel == "auto":
        return "runs" if n_runs >= world else "data"
    return parallel


def check_world(mode: str, batch_size: int, n_train: int, world: int, method: str = "erm") -> None:
    """The user errors of a placement, raised before anything is written."""
    if mode != "data":
        return
    if method != "erm":  # attacks run extra forward/backward passes that DDP's gradient hooks would all-reduce
        raise XbenchError(f"--parallel data trains plain (erm) runs only, not --method {method}; use --parallel runs")
    if batch_size % world:
        raise XbenchError(f"--parallel data: --batch-size {batch_size} (the global batch) is not divisible by the "
                          f"world size {world}")
    if n_train < world:
        raise XbenchError(f"--parallel data: the world size {world} is larger than the {n_train} training images")


def run_placed(configs: list, mode: str, train_one: Callable) -> list[dict]:
    """Every config trained by ``train_one(config, data_parallel)`` under ``mode``; summaries in config order."""
    if mode != "runs":
        return [train_one(c, mode == "data") for c in configs]
    w = dist.world()
    gathered = dist.all_gather([train_one(c, False) for c in dist.deal(configs)])
    return [gathered[i % w.size][i // w.size] for i in range(len(configs))]


class Engine:
    """One run's training machinery: the (DDP/compiled) model, batches, loss, precision, schedule and the step."""

    def __init__(self, config, data: Dataset, model: torch.nn.Module, device: torch.device, ex: dict,
                 data_parallel: bool):
        from .recipes import build_criterion

        self.config, self.data, self.device, self.ex = config, data, device, ex
        self.rs = config.recipe_settings
        self.world = dist.world() if data_parallel else dist.World()
        self.dp = self.world.size > 1
        self.writes = self.world.is_main
        net = model
        if ex["channels_last"]:
            net = net.to(memory_format=torch.channels_last)
        if self.dp:
            from torch.nn.parallel import DistributedDataParallel

            if ex["sync_bn"]:  # swaps the norm modules in place; parameters (and optimizer references) are kept
                net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        self.net = torch.compile(net) if ex["compile"] else net
        self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.rs["amp"])
        self.scaler = torch.amp.GradScaler(device.type) if self.amp is torch.float16 else None
        self.mix, self.criterion = build_criterion(self.rs, data.num_classes)
        self.loader_data = None
        if self.rs["augment"]:
            from .data.augment import augmented_train

            self.loader_data = augmented_train(data, self.rs)
        self.sched = None

    def plan(self, epoch: int) -> tuple[list[torch.Tensor], list[int]]:
        """This rank's index batches of an epoch (global batches of the run-seeded order, every W-th example)."""
        from .train import epoch_order

        order = epoch_order(self.config.seed, epoch, len(self.data.train))
        size, w = self.config.batch_size, self.world
        batches = list(order.split(size))
        keep = 2 * w.size if self.mix is not None else w.size  # mixup pairs examples within each rank's batch
        if len(batches[-1]) % keep:
            batches = batches[:-1] if self.mix is not None or len(batches[-1]) < w.size else batches
        return [b[w.rank::w.size] if self.dp else b for b in batches], [len(b) for b in batches]

    def batches(self, epoch: int):
        """(x, y, examples in the global batch) on the device; the plain serial path is Dataset.batches itself."""
        local, sizes = self.plan(epoch)
        if self.loader_data is None and self.mix is None and not self.dp:  # every example, in order: as always
            order = torch.cat(local)
            for x, y in self.data.batches("train", order, self.config.batch_size, self.device, self.ex["workers"]):
                yield self._format(x), y, len(y)
            return
        for (x, y), n in zip(self._load(local, epoch), sizes):
            yield self._format(x), y, n

    def _load(self, local: list[torch.Tensor], epoch: int):
        split = self.data.train
        if self.loader_data is None and hasattr(split, "images"):  # in memory: uint8 to the device, converted there
            for idx in local:
                pixels = split.images[idx].to(self.device, non_blocking=True).float().div_(255.0)
                yield self.data.space.to_input(pixels), split.labels[idx].to(self.device, non_blocking=True)
            return
        seed = (self.config.seed * 100_003 + epoch) * 1_000 + self.world.rank
        random.seed(seed)  # augmentations in this process (workers=0) are seeded by the run too
        dataset = self.loader_data if self.loader_data is not None else split.dataset
        from .data.augment import collate

        loader = torch.utils.data.DataLoader(dataset, batch_sampler=[b.tolist() for b in local],
                                             num_workers=self.ex["workers"], collate_fn=collate,
                                             pin_memory=self.device.type == "cuda",
                                             generator=torch.Generator().manual_seed(seed))
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            yield (x if self.loader_data is not None else self.data.space.to_input(x)), y

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.ex["channels_last"] else x

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else nullcontext()

    def loss(self, objective, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch loss, logits): the recipe's mixup and timm loss, or the training objective's own."""
        if self.criterion is None and self.mix is None:
            return objective(self.net, x, y)
        if self.config.method != "erm":
            raise XbenchError("train: recipes with mixup, JSD, BCE or label smoothing train with --method erm only")
        target = y
        if self.mix is not None:
            x, target = self.mix(x, y)
        logits = self.net(x)
        return self.criterion(logits, target), logits

    def examples(self, y: torch.Tensor) -> int:
        """Examples behind a batch's labels (augmentation splits repeat each example)."""
        return len(y) // max(1, self.rs["aug_splits"])

    def step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, update: int, y: torch.Tensor, n_global: int) -> None:
        """Schedule, backward (DDP averages over ranks; a short batch is re-weighted) and the optimizer step."""
        n_local = self.examples(y)
        if self.sched is not None:
            self.sched.step_update(update)
        opt.zero_grad(set_to_none=True)
        if self.dp and n_local * self.world.size != n_global:
            loss = loss * (n_local * self.world.size / n_global)
        if self.scaler is None:
            loss.backward()
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)  # unscales first, so Bort's Δ joins fp32 gradients
        self.scaler.update()

    def schedule(self, opt: torch.optim.Optimizer, epochs: int, steps: int) -> None:
        from .recipes import build_scheduler

        self.sched = build_scheduler(opt, self.rs, epochs, steps)

    def steps_per_epoch(self) -> int:
        return len(self.plan(0)[1])

    def new_sums(self) -> torch.Tensor:
        return torch.zeros(2, dtype=torch.float64, device=self.device)

    def accumulate(self, sums: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch's loss × examples and its correct predictions (float64, exact as Python's float sum was)."""
        sums[0] += loss.detach().double() * self.examples(y)
        sums[1] += (logits.detach().argmax(1) == y).sum()

    def epoch_totals(self, model: torch.nn.Module, sums: torch.Tensor, n: int) -> tuple[float, float, bool]:
        """(mean loss, train accuracy, loss and weights finite) over all ranks, in one device sync."""
        if self.dp:
            dist.all_reduce(sums)
        ok = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all() & torch.isfinite(sums[0])
        values = torch.cat([sums, ok.double().reshape(1)]).tolist()
        return values[0] / max(1, n), values[1] / max(1, n * max(1, self.rs["aug_splits"])), bool(values[2])

    @torch.no_grad()
    def heldout_accuracy(self, model: torch.nn.Module, serial: Callable) -> float:
        """Held-out accuracy; under DDP each rank scores every W-th image and the counts are summed."""
        if not self.dp:
            return serial(model, self.data, "heldout", self.device)
        model.eval()
        idx = torch.arange(len(self.data.heldout))[self.world.rank::self.world.size]
        correct = torch.zeros(1, device=self.device)
        for part in idx.split(512):
            x, y = self.data.inputs("heldout", part, self.device)
            correct += (model(x).argmax(1) == y).sum()
        return float(dist.all_reduce(correct)) / max(1, len(self.data.heldout))

    def saved(self) -> None:
        """After rank 0's checkpoint write: every rank waits, so a resume never reads a half-finished epoch."""
        if self.dp:
            dist.barrier()
