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
from .ranking import BASELINES
from .tables import BASE_OF, accuracy_table, example_table, layer_table, studies, table3

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


def _delta_cell(r) -> str:
    cls = "good" if r.bort_better and r.significant else ("bad" if r.significant else "muted")
    ci = "" if math.isnan(r.ci95_low) else f" [{_fmt(r.ci95_low)}, {_fmt(r.ci95_high)}]"
    return f'<span class="delta {cls}">Δ {r.delta:+.3f}{escape(ci)}</span>'


def _table3_html(board: pd.DataFrame, pair_table: pd.DataFrame) -> str:
    columns, rows = table3(board, pair_table)
    if not rows:
        return "<p>No deletion/insertion results yet.</p>"
    groups = list(dict.fromkeys(c[0] for c in columns))
    head1 = "".join(f'<th colspan="{sum(1 for c in columns if c[0] == g)}">{escape(g)}</th>' for g in groups)
    head2 = "".join(f"<th>{'Deletion ↓' if c[1] == 'deletion' else 'Insertion ↑'}</th>" for c in columns)
    per_interp = {}
    for interp, _, _ in rows:
        per_interp[interp] = per_interp.get(interp, 0) + 1
    html, seen = [], set()
    for interp, opt, cells in rows:
        tds = []
        for cell in cells:
            if cell is None:
                tds.append("<td>–</td>")
                continue
            sd = "" if math.isnan(cell["std"]) else f" ± {_fmt(cell['std'])}"
            cls = ' class="best"' if cell["best"] else ""
            delta = _delta_cell(cell["pair"]) if cell["pair"] is not None else ""
            tds.append(f"<td><span{cls}>{_fmt(cell['mean'])}{sd}</span>{delta}</td>")
        mark = " <i class=muted>baseline</i>" if interp in BASELINES else ""
        name = "" if interp in seen else f'<td class="name" rowspan="{per_interp[interp]}">{escape(interp)}{mark}</td>'
        seen.add(interp)
        bort = ' class="bort"' if opt in BASE_OF else ""
        html.append(f"<tr{bort}>{name}<td class=\"name\">{escape(str(opt))}</td>{''.join(tds)}</tr>")
    return (f'<table id="table3"><thead><tr><th rowspan="2">Interpreter</th><th rowspan="2">Optimizer</th>{head1}'
            f"</tr><tr>{head2}</tr></thead><tbody>{''.join(html)}</tbody></table>")


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
    head = ("<tr><th>model</th><th>dataset</th><th>interpreter</th><th>method</th><th>metric</th><th>Bort</th>"
            "<th>base</th>"
            "<th>seeds</th><th>Bort − base</th><th>95 % CI (paired t)</th><th>Bort better</th></tr>")
    body = []
    for _, r in keep.iterrows():
        metric = r["metric"] + ("" if r["score"] == r["metric"] else f".{r['score']}")
        cls = "good" if r["bort_better"] and r["significant"] else ("bad" if r["significant"] else "muted")
        body.append(f"<tr><td class=name>{escape(str(r['model']))}</td><td class=name>{escape(str(r['dataset']))}</td>"
                    f"<td class=name>{escape(str(r['interpreter']) or '—')}</td>"
                    f"<td class=name>{escape(str(r.get('method', 'erm')))}</td><td class=name>{escape(metric)}</td>"
                    f"<td>{_fmt(r['bort_mean'])}</td><td>{_fmt(r['base_mean'])}</td><td>{int(r['n_seeds'])}</td>"
                    f"<td class={cls}>{r['delta']:+.3f}</td><td>[{_fmt(r['ci95_low'])}, {_fmt(r['ci95_high'])}]</td>"
                    f"<td>{'yes' if r['bort_better'] else 'no'}{' *' if r['significant'] else ''}</td></tr>")
    return f'<table id="pairs"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def weight_sections(board: pd.DataFrame) -> list[tuple[str, str]]:
    """Seed 004's per-layer tables and the attribution metrics, as (title, html) sections."""
    from .weights import attribution_table, weight_tables

    out = [(caption, _frame_html(t, f"weights{i}")) for i, (caption, t) in enumerate(weight_tables(board).items())]
    att = attribution_table(board)
    if not att.empty:
        out.append(("Attribution metrics (↑ higher is better, ↓ lower)", _frame_html(att, "attribution")))
    return out


def render(df: pd.DataFrame, board: pd.DataFrame, pair_table: pd.DataFrame, figures: dict[str, Path],
           extra: list[tuple[str, str]] = ()) -> str:
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
        *extra,  # (title, html): seed 004's weight tables, "Ranking" and "Stability"
        ("Figures", "".join(figs) or "<p>No figures.</p>"),
    ]
    body = "".join(f"<h2>{escape(t)}</h2>{html}" for t, html in sections)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>xbench leaderboard</title>"
            f"<style>{CSS}</style></head><body><h1>xbench leaderboard</h1>"
            f"<p>{len(df)} records from {len(runs)} runs: {escape(', '.join(runs))}. Built {stamp} by xbench "
            f"{escape(__version__)}.</p><p>{escape(studies(df))}</p>{body}</body></html>")
