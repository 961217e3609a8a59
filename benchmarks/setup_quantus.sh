#!/usr/bin/env bash
# Quantus 0.6.0 for the side-by-side benchmark, in its own folder: it calls np.trapz, which numpy 2.4 removed, so
# it gets numpy < 2.4 there (torch, pandas and the rest come from the project's venv underneath).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-../.venv/bin/python}
"$PY" -m pip install --quiet --target .venv-quantus --no-deps "quantus==0.6.0" "numpy>=2.0,<2.4" \
    "opencv-python-headless<5" cachetools
