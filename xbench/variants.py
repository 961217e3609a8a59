"""Comma lists in settings cross into one job per value: ``--hparam deletion.substrate=zero,blur,noisy_linear``.

    cross(METRICS, "deletion", {"substrate": "zero,blur", "step": "8"})
    # → [({"substrate": "zero", "step": "8"}, "substrate=zero"),
    #    ({"substrate": "blur", "step": "8"}, "substrate=blur")]

A value crosses when it is text with a comma and the setting is not free text (free-text settings such as road's
``percentages`` keep their commas). Several crossed settings give their full product. The label names the crossed
values (empty when nothing crossed) and goes into every record as ``variant``, so reports can group by it.
"""
from __future__ import annotations

import itertools
from typing import Any


def _crosses(setting, value: Any) -> bool:
    free_text = setting is not None and setting.kind is str and not setting.choices
    return isinstance(value, str) and "," in value and not free_text


def cross(registry, name: str, given: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """[(settings, variant label)], one per combination of the crossed values."""
    schema = registry.settings(name)
    fixed = {k: v for k, v in given.items() if not _crosses(schema.get(k), v)}
    lists = {k: [p.strip() for p in v.split(",") if p.strip()] for k, v in given.items() if k not in fixed}
    if not lists:
        return [(dict(given), "")]
    out = []
    for combo in itertools.product(*lists.values()):
        chosen = dict(zip(lists, combo))
        out.append(({**fixed, **chosen}, ", ".join(f"{k}={v}" for k, v in chosen.items())))
    return out
