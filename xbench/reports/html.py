"""The self-contained leaderboard page: Table 3 layout, model tables, figures embedded as base64 PNG.

Every string that comes from a user (run names, paths, model and dataset names, interpreter settings) is escaped.
"""
from __future__ import annotations

import base64
import math
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import pandas as pd

from .. import __version__
from .tables import BASE_OF, accuracy_table, example_table, layer_table, table3

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right} th{background:#f4f4f4}
td.name{text-align:left} tr.bort td{background:#fff6f6}
.best{font-weight:bold} .delta{font-size:.8em;color:#666;display:block}
.good{color:#1a7f37} .bad{color:#b42318} .muted{color:#888}
figure{margin:1em 0} figcaption{font-size:.85em;color:#555} img{max-width:100%;border:1px solid #eee}
"""


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _delta_cell(p: pd.DataFrame) -> str:
    if p.empty:
        return ""
    r = p.iloc[0]
    cls = "good" if r["bort_better"] and r["significant"] else ("bad" if r["significant"] else "muted")
    ci = "" if math.isnan(r["ci95_low"]) else f" [{_fmt(r['ci95_low'])}, {_fmt(r['ci95_high'])}]"
    return f'<span class="delta {cls}">Δ {r["delta"]:+.3f}{escape(ci)}</span>'


def _table3_html(board: pd.DataFrame, pair_table: pd.DataFrame) -> str:
    wide = table3(board, pair_table)
    if wide.empty:
        return "<p>No deletion/insertion results yet.</p>"
    cols = list(wide.columns)
    groups = list(dict.fromkeys(c[0] for c in cols))
    std = board.set_index(["interpreter", "optimizer", "model", "dataset", "metric", "score"])["std"]
    best = {}
    for c in cols:
        series = wide[c].dropna()
        if not series.empty:
            best[c] = series.min() if c[1] == "deletion" else series.max()
    head1 = "".join(f'<th colspan="{sum(1 for c in cols if c[0] == g)}">{escape(g)}</th>' for g in groups)
    head2 = "".join(f"<th>{'Deletion ↓' if c[1] == 'deletion' else 'Insertion ↑'}</th>" for c in cols)
    rows = []
    interps = list(dict.fromkeys(i for i, _ in wide.index))
    for interp in interps:
        sub = wide.loc[interp]
        for k, (opt, row) in enumerate(sub.iterrows()):
            cells = []
            for c in cols:
                v = row[c]
                if isinstance(v, float) and math.isnan(v):
                    cells.append("<td>–</td>")
                    continue
                model, dataset = c[0].split(" · ", 1)
                s = std.get((interp, opt, model, dataset, c[1], c[1]), float("nan"))
                cls = ' class="best"' if c in best and v == best[c] else ""
                p = pair_table
                if opt in BASE_OF and not p.empty:
                    p = p[(p["interpreter"] == interp) & (p["optimizer"] == opt) & (p["model"] == model)
                          & (p["dataset"] == dataset) & (p["metric"] == c[1]) & (p["score"] == c[1])]
                    delta = _delta_cell(p)
                else:
                    delta = ""
                sd = "" if math.isnan(s) else f" ± {_fmt(s)}"
                cells.append(f"<td><span{cls}>{_fmt(v)}{sd}</span>{delta}</td>")
            name = f'<td class="name" rowspan="{len(sub)}">{escape(interp)}</td>' if k == 0 else ""
            bort = ' class="bort"' if str(opt).startswith("bort") else ""
            rows.append(f"<tr{bort}>{name}<td class=\"name\">{escape(str(opt))}</td>{''.join(cells)}</tr>")
    return (f'<table id="table3"><thead><tr><th rowspan="2">Interpreter</th><th rowspan="2">Optimizer</th>{head1}'
            f"</tr><tr>{head2}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _frame_html(table: pd.DataFrame, table_id: str) -> str:
    if table.empty:
        return "<p>No results yet.</p>"
    t = table.copy()
    t.index = t.index.map(lambda i: " · ".join(map(str, i)) if isinstance(i, tuple) else str(i))
    head = "".join(f"<th>{escape(str(c))}</th>" for c in t.columns)
    body = "".join(f'<tr><td class="name">{escape(str(i))}</td>'
                   + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for i, r in t.iterrows())
    return f'<table id="{table_id}"><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pairs_html(pair_table: pd.DataFrame) -> str:
    if pair_table.empty:
        return "<p>No Bort/base twins found.</p>"
    keep = pair_table[pair_table["layer"] == ""]
    head = ("<tr><th>model</th><th>dataset</th><th>interpreter</th><th>metric</th><th>Bort</th><th>base</th>"
            "<th>seeds</th><th>Bort − base</th><th>95 % CI (paired t)</th><th>Bort better</th></tr>")
    body = []
    for _, r in keep.iterrows():
        metric = r["metric"] + ("" if r["score"] == r["metric"] else f".{r['score']}")
        cls = "good" if r["bort_better"] and r["significant"] else ("bad" if r["significant"] else "muted")
        body.append(f"<tr><td class=name>{escape(str(r['model']))}</td><td class=name>{escape(str(r['dataset']))}</td>"
                    f"<td class=name>{escape(str(r['interpreter']) or '—')}</td><td class=name>{escape(metric)}</td>"
                    f"<td>{_fmt(r['bort_mean'])}</td><td>{_fmt(r['base_mean'])}</td><td>{int(r['n_seeds'])}</td>"
                    f"<td class={cls}>{r['delta']:+.3f}</td><td>[{_fmt(r['ci95_low'])}, {_fmt(r['ci95_high'])}]</td>"
                    f"<td>{'yes' if r['bort_better'] else 'no'}{' *' if r['significant'] else ''}</td></tr>")
    return f'<table id="pairs"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def render(df: pd.DataFrame, board: pd.DataFrame, pair_table: pd.DataFrame, figures: dict[str, Path]) -> str:
    runs = sorted(set(df["run_id"]))
    acc = accuracy_table(board)
    figs = []
    for caption, path in figures.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        figs.append(f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{escape(caption)}</figcaption></figure>")
    sections = [
        ("Deletion ↓ / Insertion ↑ (layout of the Bort paper's Table 3)",
         "<p>Mean ± std over seeds of each run's mean AUC; best per column in bold. Under each Bort row: Bort − base "
         "with a 95 % paired t interval over seeds (green: Bort better and the interval excludes 0).</p>"
         + _table3_html(board, pair_table)),
        ("Bort − base, every metric", _pairs_html(pair_table)),
        ("Held-out accuracy", _frame_html(acc, "accuracy")),
        ("Reconstruction ratio per layer (lower = more invertible)",
         _frame_html(layer_table(board, "recon_ratio", "recon_ratio"), "recon")),
        ("Orthogonality error ‖W Wᵀ − I‖_F/√out per layer", _frame_html(layer_table(board, "gram", "ortho_error"),
                                                                         "gram")),
        ("Feature decomposition and adversarial synthesis",
         _frame_html(example_table(board, ["decomposition", "synthesis"]), "decomposition")),
        ("Figures", "".join(figs) or "<p>No figures.</p>"),
    ]
    body = "".join(f"<h2>{escape(t)}</h2>{html}" for t, html in sections)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>xbench leaderboard</title>"
            f"<style>{CSS}</style></head><body><h1>xbench leaderboard</h1>"
            f"<p>{len(df)} records from {len(runs)} runs: {escape(', '.join(runs))}. Built {stamp} by xbench "
            f"{escape(__version__)}.</p>{body}</body></html>")
