"""Strict configs: unknown keys and wrong types are errors naming the key and the file."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bmvtrack.config import ConfigError, load_config, save_config
from bmvtrack.data.readers import DataConfig


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    maybe: str | None = None


def test_defaults_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\ninner:\n  lr: 1\nsizes: [3, 4]\n")
    cfg = load_config(Outer, p, ["inner.steps=7", "maybe=hello"])
    assert cfg == Outer("run", Inner(1.0, 7), [3, 4], "hello")
    assert isinstance(cfg.inner.lr, float)
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(Outer, tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize(
    "text, match",
    [
        ("nmae: run\n", r"c\.yaml: unknown key\(s\) \['nmae'\]"),
        ("inner:\n  lrr: 1\n", r"unknown key\(s\) \['inner.lrr'\]"),
        ("inner:\n  steps: 1.5\n", r"c\.yaml.*'inner.steps' expects an integer"),
        ("sizes: 3\n", "'sizes' expects a list"),
        ("name: [1]\n", "'name' expects a string"),
        ("- 1\n", "top level must be a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path, text, match):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(Outer, p)


def test_literal_choices_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="layout' must be one of"):
        load_config(DataConfig, None, ["layout=davis2019"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(DataConfig, tmp_path / "missing.yaml")


@dataclass
class WithSection:
    inner: Inner = field(default_factory=lambda: Inner(lr=0.5, steps=99))


def test_partial_section_keeps_the_outer_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  lr: 2\n")
    cfg = load_config(WithSection, p)
    assert cfg.inner == Inner(lr=2.0, steps=99)  # not Inner's own default of 10 steps


def test_exponent_without_dot_is_a_float(tmp_path):
    cfg = load_config(Outer, None, ["inner.lr=5e-4"])
    assert cfg.inner.lr == 5e-4
