"""The one Registry class, and every family's registry looped over."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import xbench

from xbench.errors import UnknownNameError, XbenchError
from xbench.registry import FAMILIES, Registry, family


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


def _registered_in_source() -> dict[str, set[str]]:
    """Names each family's modules register, read from the source (``@MODELS.register("lenet"``), not from the
    registry: an entry whose module nobody imports would be missing from the registry but found here."""
    attr_to_family = {path.split(":")[1]: fam for fam, path in FAMILIES.items()}
    found: dict[str, set[str]] = {fam: set() for fam in FAMILIES}
    pattern = re.compile(r"@(\w+)\.register\(\s*\"([^\"]+)\"")
    for path in Path(xbench.__file__).parent.rglob("*.py"):
        for attr, name in pattern.findall(path.read_text()):
            if attr in attr_to_family:
                found[attr_to_family[attr]].add(name)
    return found


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_every_entry_in_the_source_is_registered_and_documented(fam):
    reg = family(fam)
    assert set(reg.list()) == _registered_in_source()[fam] != set()
    for name, doc in reg.describe():
        assert doc, f"{fam} {name} has no docstring"
    with pytest.raises(UnknownNameError):
        reg.get("definitely-not-registered")
