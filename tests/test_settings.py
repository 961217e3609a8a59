"""Typed settings: the Setting parser, every declared setting of every registry entry against bad values, and
results that never depend on memory-only settings."""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from xbench.errors import XbenchError
from xbench.registry import FAMILIES, family
from xbench.settings import Setting, check, keyed

ENTRIES = [(fam, name) for fam in FAMILIES for name in family(fam).list()]
DECLARED = [(fam, name, key) for fam, name in ENTRIES for key in family(fam).settings(name)]


def test_parse_by_declared_type_range_and_choices():
    n = Setting(4000, "masks", range="[1, inf)")
    p = Setting(0.5, "probability", range="(0, 1)")
    amp = Setting(1.0, "amplitude", range="(0, inf)", choices=("ada",))
    layer = Setting(None, "layer", str, optional=True)
    assert n.parse("4000") == 4000 and n.parse("1e3") == 1000 and n.parse(7.0) == 7
    assert p.parse("1e-3") == 0.001 and p.parse(np.float32(0.25)) == 0.25 and p.parse(torch.tensor(0.5)) == 0.5
    assert amp.parse("ada") == "ada" and amp.parse("2") == 2.0
    assert layer.parse("none") is None and layer.parse("relu5") == "relu5"
    assert Setting(False, "flag").parse("true") is True
    for setting, bad, why in [(n, "abc", "not a number"), (n, 1.5, "not a whole number"), (n, 0, "out of range"),
                              (n, True, "not a number"), (p, 1, "out of range"), (p, 0.0, "out of range"),
                              (p, "nan", "not finite"), (p, math.inf, "not finite"), (amp, "adaa", "not a number"),
                              (layer, 3, "not text"), (Setting("a", "x", choices=("a", "b")), "c", "choices"),
                              (Setting(False, "flag"), "maybe", "true or false")]:
        with pytest.raises(ValueError, match=why):
            setting.parse(bad)


def test_declarations_fail_at_import_not_at_use():
    with pytest.raises(TypeError):
        Setting(None, "a None default must be optional")
    with pytest.raises(ValueError):
        Setting(1, "bad interval", range="1 to 2")
    with pytest.raises(ValueError):
        Setting(5, "default outside its own range", range="[0, 1]")


def test_check_names_entry_setting_value_and_what_is_allowed():
    schema = {"n_masks": Setting(4000, "masks", range="[1, inf)"), "p": Setting(0.5, "p", range="(0, 1)")}
    assert check("rise", schema, {"p": "0.25"}) == {"n_masks": 4000, "p": 0.25}
    with pytest.raises(XbenchError, match=r"^rise: p=2 is out of range; allowed: float in \(0, 1\)$"):
        check("rise", schema, {"p": 2})
    with pytest.raises(XbenchError, match="unknown setting 'n_mask'; did you mean n_masks"):
        check("rise", schema, {"n_mask": 3})
    assert keyed({"b": Setting(1, "b", memory=True)}, {"a": 1, "b": 2}) == {"a": 1}


def test_every_family_declares_settings():
    counts = {fam: sum(len(family(fam).settings(n)) for n in family(fam).list()) for fam in FAMILIES}
    assert all(counts[f] > 0 for f in ("interpreters", "metrics", "optimizers", "models", "datasets")), counts
    for fam, name, key in DECLARED:  # a one-line description each
        text = family(fam).settings(name)[key].help
        assert text.strip() and "\n" not in text and len(text) < 160, (fam, name, key)


def _bad_values(s: Setting) -> st.SearchStrategy:
    """Values the declaration must refuse: wrong type, NaN, ±inf, and just outside the range."""
    wrong = {int: [st.just("abc"), st.just(1.5), st.just(True), st.just("nan"), st.just(math.inf)],
             float: [st.just("abc"), st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just("inf")],
             bool: [st.just("maybe"), st.just(2), st.just(math.nan)],
             str: [st.just(3), st.just(math.nan), st.just(1.5)]}[s.kind]
    if s.kind is str and s.choices:
        wrong.append(st.text(min_size=1, max_size=8).filter(  # "none"/"null" mean None where that is allowed
            lambda t: t not in map(str, s.choices) and not (s.optional and t.lower() in ("none", "null"))))
    if s.range:
        low, high, low_closed, high_closed = s.bounds
        step = 1 if s.kind is int else 1e-6
        if math.isfinite(low):
            below = low - step if low_closed else low
            wrong.append(st.floats(min_value=low - 1e6, max_value=below).map(s.kind) if s.kind is float
                         else st.integers(min_value=int(low) - 10**6, max_value=int(below)))
        if math.isfinite(high):
            above = high + step if high_closed else high
            wrong.append(st.floats(min_value=above, max_value=high + 1e6) if s.kind is float
                         else st.integers(min_value=int(math.ceil(above)), max_value=int(high) + 10**6))
    return st.one_of(wrong)


@pytest.mark.parametrize("fam,name,key", DECLARED, ids=[f"{f}-{n}-{k}" for f, n, k in DECLARED])
def test_every_declared_setting_refuses_bad_values(fam, name, key, tmp_path):
    reg = family(fam)
    setting = reg.settings(name)[key]
    entry = f"{name}:x" if reg.takes_arg(name) else name

    @hyp_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=_bad_values(setting))
    def refuses(value):
        if value in setting.choices and not isinstance(value, bool):
            return
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            with pytest.raises(XbenchError, match=key):
                reg.create(entry, **{key: value})  # checked before the entry is called: no model or data needed
        finally:
            os.chdir(cwd)
        assert not any(tmp_path.iterdir())  # nothing written

    refuses()


# -- results never depend on memory-only settings -------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_run):
    from xbench.train import load_run

    _, runs = tiny_run
    model, data, _ = load_run(runs[1]["run_dir"])
    x, y = data.inputs("heldout", range(7))
    return model, data.space, x, y


def _shrunk(schema: dict) -> dict:
    """Every memory-only setting at its smallest allowed value (1 for counts)."""
    return {k: 1 for k, s in schema.items() if s.memory}


@pytest.mark.parametrize("name", family("interpreters").list())
def test_interpreter_maps_do_not_depend_on_memory_settings(name, trained):
    from test_interpreters import FAST
    from xbench.explain import compute_maps
    from xbench.interpreters import INTERPRETERS, create_interpreter

    model, space, x, _ = trained
    target = model(x).argmax(1)
    fast = FAST.get(name, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        big = create_interpreter(name, model, space, **fast)
        small = create_interpreter(name, model, space, **fast, **_shrunk(INTERPRETERS.settings(name)))
    a = compute_maps(big, x, target, batch_size=7)
    b = compute_maps(small, x, target, batch_size=3)
    assert big.key == small.key
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


@pytest.mark.parametrize("name", family("metrics").list())
def test_metric_scores_do_not_depend_on_batch_or_memory_settings(name, trained):
    from xbench.evaluate import score_metric
    from xbench.metrics import METRICS, create_metric

    model, space, x, y = trained
    maps = torch.randn(len(x), *x.shape[-2:], generator=torch.Generator().manual_seed(1))
    big = create_metric(name, space)
    small = create_metric(name, space, **_shrunk(METRICS.settings(name)))
    explain = None
    if big.needs_explainer:  # metrics that re-explain noisy copies get a cheap interpreter
        from xbench.interpreters import create_interpreter

        explain = create_interpreter("guided_backprop", model, space).attribute
    a, _ = score_metric(big, model, x, y, maps if big.needs_maps else None, batch_size=7, explain=explain)
    b, _ = score_metric(small, model, x, y, maps if small.needs_maps else None, batch_size=2, explain=explain)
    assert big.key(tuple(x.shape[1:])) == small.key(tuple(x.shape[1:]))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=f"{name}.{k}")
