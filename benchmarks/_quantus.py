"""Running a script in the Quantus 0.6.0 folder (benchmarks/setup_quantus.sh) on tensors saved for it (shared by the
benchmark scripts: Quantus never enters xbench's own environment)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
QUANTUS_DIR = HERE / ".venv-quantus"


def run_quantus(code: str, state: dict, threads: int = 0) -> tuple[dict | None, str]:
    """(the JSON the script prints last, "") or (None, why not): ``code`` gets the path of ``state`` as argv[1];
    ``threads`` > 0 sets the subprocess's torch CPU threads (OMP_NUM_THREADS)."""
    if not QUANTUS_DIR.is_dir():
        return None, f"not installed (run benchmarks/setup_quantus.sh to create {QUANTUS_DIR.name})"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.pt"
        torch.save(state, path)
        env = {**os.environ, "PYTHONPATH": f"{QUANTUS_DIR}{os.pathsep}{HERE.parent}",
               **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return None, "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""
