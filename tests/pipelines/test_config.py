"""The one config builder: every value converted to its field's type or refused, naming the key."""
from dataclasses import dataclass, field
from typing import Optional, Tuple

import pytest

from motionssl.pipelines.config import ConfigError, build, coerce_kwargs
from motionssl.pipelines.iterators import build_config


@dataclass
class Inner:
    size: Tuple[int, int] = (112, 112)
    prob: float = 0.5


@dataclass
class Outer:
    name: str = "x"
    lr: Optional[float] = None
    steps: int = 10
    on: bool = True
    speeds: Tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=lambda: Inner(prob=0.25))

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def test_values_are_converted_to_the_annotated_types():
    cfg = build(Outer, {"lr": "1e-3", "steps": 3.0, "speeds": [1, "4"], "inner": {"size": [8, 9]}})
    assert cfg.lr == 0.001 and cfg.steps == 3 and cfg.speeds == (1, 4)
    assert cfg.inner == Inner(size=(8, 9), prob=0.25)  # merged over the field's own default, not Inner()'s
    assert build(Outer, {"lr": None}).lr is None


@pytest.mark.parametrize("values,match", [
    ({"steps": 2.5}, r"steps=2.5: expected a whole number"),
    ({"steps": True}, r"steps=True: expected a number, got a boolean"),
    ({"on": "yes"}, r"on='yes': expected true or false"),
    ({"name": 3}, r"name=3: expected a string"),
    ({"inner": {"size": [1, 2, 3]}}, r"inner.size=\[1, 2, 3\]: expected 2 values"),
    ({"inner": {"zoom": 1}}, r"unknown inner key\(s\) \['zoom'\]; valid keys: \['prob', 'size'\]"),
    ({"inner": 5}, r"inner must be a mapping"),
    ({"steps": 0}, r"steps must be >= 1, got 0"),
])
def test_bad_values_name_the_key(values, match):
    with pytest.raises(ConfigError, match=match):
        build(Outer, values, origin="a.yaml")
    with pytest.raises(ConfigError, match=r"\(from a.yaml\)$"):
        build(Outer, values, origin="a.yaml")


def test_method_configs_keep_their_own_defaults():
    moquad = build_config("moquad", {"clip": {"frames": 8}})
    assert moquad.clip.frames == 8 and moquad.clip.speeds == (1, 2, 4)  # MoQuad's speeds survive
    assert build_config("mcpnet", {"gap": "3"}).gap == 3


def test_constructor_options_are_converted_too():
    def make(temperature: float = 0.1, proj_dim: int = 128, widths: Tuple[int, ...] = (8,)):
        return temperature, proj_dim, widths

    assert coerce_kwargs(make, {"temperature": "5e-2", "widths": [4, 8]}, "method") == \
        {"temperature": 0.05, "widths": (4, 8)}
    with pytest.raises(ConfigError, match=r"method.proj_dim=True: expected a number, got a boolean"):
        coerce_kwargs(make, {"proj_dim": True}, "method")
    with pytest.raises(ConfigError, match=r"unknown method key\(s\) \['tau'\]"):
        coerce_kwargs(make, {"tau": 1}, "method")


def test_the_options_of_a_class_are_converted_by_its_constructors_annotations():
    class Loader:
        workers: str = "class attribute"  # not a constructor option: its annotation must not be read

        def __init__(self, workers: int = 2, threads: Optional[int] = None):
            self.workers, self.threads = workers, threads

    assert coerce_kwargs(Loader, {"workers": "3", "threads": None}, "loader") == {"workers": 3, "threads": None}
    with pytest.raises(ConfigError, match=r"^loader\.workers=2\.5: expected a whole number$"):
        coerce_kwargs(Loader, {"workers": 2.5}, "loader")
