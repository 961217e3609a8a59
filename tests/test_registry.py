"""The one Registry class, and every family's registry looped over."""
from __future__ import annotations

import pytest

from xbench.errors import UnknownNameError, XbenchError
from xbench.registry import Registry


def test_register_create_list_and_close_matches():
    reg = Registry("widget")

    @reg.register("small_cnn")
    class Small:
        """A small one."""

        def __init__(self, width=1.0, depth=3):
            self.width, self.depth = width, depth

    @reg.register("small_mlp")
    def small_mlp(depth=2):
        """An MLP."""
        return ("mlp", depth)

    @reg.register("tv", takes_arg=True)
    def tv(name, scale=1):
        return (name, scale)

    obj = reg.create("small_cnn", width=None, depth=5)  # None keeps the default
    assert (obj.width, obj.depth) == (1.0, 5)
    assert reg.create("small_mlp") == ("mlp", 2)
    assert reg.create("tv:resnet18", scale=2) == ("resnet18", 2)
    assert reg.list() == ["small_cnn", "small_mlp", "tv"]
    assert reg.list("small_*") == ["small_cnn", "small_mlp"]
    assert reg.resolve("small_mlp,small_*") == ["small_mlp", "small_cnn"]
    assert reg.resolve("all") == reg.list()
    assert "tv:anything" in reg and "nope" not in reg
    assert Small.registry_name == "small_cnn"
    with pytest.raises(UnknownNameError, match="did you mean small_cnn"):
        reg.get("small_cn")
    with pytest.raises(XbenchError, match="needs an argument"):
        reg.create("tv")
    with pytest.raises(XbenchError):
        reg.resolve("zzz*")
    with pytest.raises(ValueError):
        reg.register("small_cnn")(Small)
    assert dict(reg.describe())["small_cnn"] == "A small one."


def _families():
    import xbench.data as d
    import xbench.interpreters as i
    import xbench.metrics as m
    import xbench.models as mo
    import xbench.objectives as ob
    import xbench.optim as o

    return {"datasets": d.DATASETS, "models": mo.MODELS, "optimizers": o.OPTIMIZERS, "interpreters": i.INTERPRETERS,
            "metrics": m.METRICS, "objectives": ob.OBJECTIVES}


@pytest.mark.parametrize("family", ["datasets", "models", "optimizers", "interpreters", "metrics", "objectives"])
def test_every_entry_is_documented_and_found(family):
    reg = _families()[family]
    assert len(reg) > 0
    for name, doc in reg.describe():
        assert doc, f"{family} {name} has no docstring"
        assert name.split(":")[0] in reg
    with pytest.raises(UnknownNameError):
        reg.get("definitely-not-registered")
