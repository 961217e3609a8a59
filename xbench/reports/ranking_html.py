"""The "Ranking" and "Stability" sections: HTML, plain text, and the τ heatmaps (matplotlib, Agg)."""
from __future__ import annotations

import math
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from .ranking import BASELINES, UNIT


def _f(v, digits=2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _unit_title(r) -> str:
    metric = r["metric"] + ("" if r["score"] == r["metric"] else f".{r['score']}")
    head = " · ".join(str(r[k]) for k in ("model", "dataset", "variant", "optimizer") if r[k] != "")
    return f"{head} · {metric}" + (f" [{r['metric_variant']}]" if r["metric_variant"] else "")


def not_beating_random(ranking: pd.DataFrame) -> pd.DataFrame:
    """Rows (not baselines) whose paired interval against ``random`` does not exclude 0 on the good side."""
    if ranking.empty:
        return ranking
    return ranking[(ranking["beats_random"] == 0.0) & ~ranking["interpreter"].isin(BASELINES)]


def _sample(r) -> str:
    """'80 images, 2 seeds; bootstrap over seeds × images' (what the unit's intervals resampled)."""
    seeds = r.get("n_seeds", 1)
    seeds = 1 if pd.isna(seeds) else int(seeds)
    return (f"{int(r['n_images'])} images" + (f", {seeds} seeds" if seeds > 1 else "")
            + f"; bootstrap over {r.get('bootstrap', 'images')}")


def ranking_html(ranking: pd.DataFrame) -> str:
    if ranking.empty:
        return "<p>No per-example scores with two or more interpreters yet.</p>"
    html = ["<p>Per unit (model · dataset · arm · metric [variant]) interpreters are ranked on every image "
            "(1 = best); "
            "mean rank ± SEM, median, and percentile-bootstrap 95 % intervals: over images with one seed, over seeds "
            "× images (seeds drawn with replacement, then images within each) with several. "
            "<i>baseline</i> marks the sanity baselines; <span class=bad>not &gt; random</span>: the paired interval "
            "against <code>random</code> does not exclude 0.</p>"]
    for _, t in ranking.groupby(UNIT, sort=True):
        head = t.iloc[0]
        rows = []
        for _, r in t.iterrows():
            base = " <i class=muted>baseline</i>" if r["interpreter"] in BASELINES else ""
            flag = " <span class=bad>not &gt; random</span>" if r["beats_random"] == 0.0 else ""
            rows.append(f"<tr><td>{int(r['position'])}</td><td class=name>{escape(r['interpreter'])}{base}{flag}</td>"
                        f"<td>{_f(r['mean_rank'])} ± {_f(r['sem_rank'])}</td><td>{_f(r['median_rank'], 1)}</td>"
                        f"<td>[{_f(r['rank_ci_low'])}, {_f(r['rank_ci_high'])}]</td>"
                        f"<td>{_f(r['mean_goodness'], 3)} [{_f(r['goodness_ci_low'], 3)}, "
                        f"{_f(r['goodness_ci_high'], 3)}]</td></tr>")
        html.append(f"<h3>{escape(_unit_title(head))} <small class=muted>({_sample(head)})</small></h3>"
                    "<table class=ranking><thead><tr><th>#</th><th>interpreter</th><th>mean rank ± SEM</th>"
                    "<th>median</th><th>95 % CI (rank)</th><th>score (sign: higher = better) [95 % CI]</th></tr>"
                    f"</thead><tbody>{''.join(rows)}</tbody></table>")
    return "".join(html)


def stability_html(stability: pd.DataFrame, verdicts: list[str], heatmaps: dict[str, Path]) -> str:
    import base64

    html = ["<p>Kendall τ between two rankings (mean ranks over the images both share), with a percentile-bootstrap "
            "95 % interval (resampled: images, or seeds × images where the rankings pool several seeds). "
            "τ = 1: the same order; 0: unrelated.</p>"]
    html.append("<ul>" + "".join(f"<li>{escape(v)}</li>" for v in verdicts) + "</ul>" if verdicts else "")
    if not stability.empty:
        body = "".join(f"<tr><td class=name>{escape(f'{r.model} · {r.dataset} · {r.optimizer}')}</td>"
                       f"<td class=name>{r.kind}</td><td class=name>{escape(r.a)}</td><td class=name>{escape(r.b)}</td>"
                       f"<td>{r.n_images}</td><td>{_f(r.tau)}</td><td>[{_f(r.ci95_low)}, {_f(r.ci95_high)}]</td>"
                       f"<td class=name>{escape(str(getattr(r, 'bootstrap', 'images')))}</td></tr>"
                       for r in stability.itertuples())
        html.append("<table id=stability><thead><tr><th>model · dataset · arm</th><th>pair</th><th>ranking A</th>"
                    "<th>ranking B</th><th>images</th><th>τ</th><th>95 % CI</th><th>resampled</th></tr></thead>"
                    f"<tbody>{body}</tbody></table>")
    for caption, path in heatmaps.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        html.append(f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{escape(caption)}</figcaption></figure>")
    return "".join(html)


def ranking_text(ranking: pd.DataFrame, verdicts: list[str]) -> str:
    """Terminal summary: each faithfulness unit's order with mean-rank intervals, the verdicts, and the flags."""
    if ranking.empty:
        return ""
    lines = ["\nranking (mean rank [95 % CI], 1 = best; † baseline; ! not better than random):"]
    for _, t in ranking.groupby(UNIT, sort=True):
        cells = [f"{r.interpreter}{'†' if r.interpreter in BASELINES else ''}"
                 f"{'!' if r.beats_random == 0.0 else ''} "
                 f"{r.mean_rank:.2f} [{_f(r.rank_ci_low)}, {_f(r.rank_ci_high)}]" for r in t.itertuples()]
        lines.append(f"  {_unit_title(t.iloc[0])} ({_sample(t.iloc[0])}): " + " > ".join(cells))
    if verdicts:
        lines.append("stability:")
        lines += [f"  {v}" for v in verdicts]
    return "\n".join(lines)


def tau_heatmap(matrix: pd.DataFrame, path: Path, title: str) -> Path:
    from .figures import plt, save_figure

    n = len(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * n, 0.8 + 0.45 * n))
    im = ax.imshow(matrix.to_numpy(float), cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xticks(range(n), matrix.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), matrix.index, fontsize=7)
    for i in range(n):
        for j in range(n):
            v = matrix.iat[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, shrink=0.7, label="Kendall τ")
    ax.set_title(title, fontsize=8)
    return save_figure(fig, path)
