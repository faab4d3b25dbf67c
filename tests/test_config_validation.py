"""Values that make no sense stop at the config, and text stays text.

Ranges: a field declares its range in metadata (``field(default=..., metadata={"ge": 1})`` or
``ranged(...)``); ``from_dict`` (hence every ``load_config``) and ``validate`` (configs built in
code) reject a value outside it with one line naming the key, the range, the value and the source.
Overrides: a value for a string or path field is taken as written (``#``, ``: ``, ``*``, ``&``,
``!``, ``yes``/``no``/``null``, ``007``), so a folder name never becomes a comment, a boolean,
None or a number. Commands: ``visualize --sequence nope`` is one line listing the valid names.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from bmvtrack.adaptation import AdaptConfig
from bmvtrack.config import (
    ConfigError, field_bounds, from_dict, load_config, parse_override_value, ranged, save_config, to_dict, validate,
)
from bmvtrack.data.readers import DataConfig, TrackFilter
from bmvtrack.pretrain_vae import PretrainConfig, load_pretrain_config
from bmvtrack.envs.tracking_env import EnvConfig


# --------------------------------------------------------------------------- the mechanism


@dataclass
class Agent:  # how agents/train_sac.py's AgentConfig adopts ranges
    total_timesteps: int = field(default=20_000, metadata={"ge": 1})
    batch_size: int = field(default=256, metadata={"ge": 1})
    learning_rate: float = field(default=3e-4, metadata={"gt": 0.0})
    tau: float = ranged(0.005, gt=0.0, le=1.0)
    net_arch: list[int] = field(default_factory=lambda: [256, 256], metadata={"ge": 1})
    target_entropy: float | None = ranged(None, lt=0.0)


@dataclass
class Train:  # ... and TrainConfig
    agent: Agent = field(default_factory=Agent)
    n_envs: int = field(default=2, metadata={"ge": 1})
    out_dir: str | None = None
    encoder: str | None = None
    tag: str = ""
    folder: Path = Path("runs")
    algo: Literal["mvsac", "sac"] = "mvsac"
    seed: int = 0
    extra: list[Agent] = field(default_factory=list)


@pytest.mark.parametrize("override, key, shown", [
    ("n_envs=0", "n_envs", ">= 1, got 0"),
    ("agent.batch_size=0", "agent.batch_size", ">= 1, got 0"),
    ("agent.learning_rate=-1", "agent.learning_rate", "> 0.0, got -1.0"),
    ("agent.learning_rate=0", "agent.learning_rate", "> 0.0, got 0.0"),
    ("agent.total_timesteps=-5", "agent.total_timesteps", ">= 1, got -5"),
    ("agent.tau=1.5", "agent.tau", "in (0.0, 1.0], got 1.5"),
    ("agent.tau=.nan", "agent.tau", "in (0.0, 1.0], got nan"),
    ("agent.learning_rate=.inf", "agent.learning_rate", "> 0.0, got inf"),
    ("agent.net_arch=[64, 0]", "agent.net_arch[1]", ">= 1, got 0"),
    ("agent.target_entropy=3", "agent.target_entropy", "< 0.0, got 3.0"),
])
def test_out_of_range_names_key_range_value_and_source(override: str, key: str, shown: str, tmp_path: Path) -> None:
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("seed: 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(Train, cfg_file, [override])
    msg = str(exc.value)
    assert msg == f"{cfg_file} + overrides: key '{key}' must be {shown}", msg


def test_huge_values_are_checked_and_shown_short() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(Train, None, ["n_envs=-" + "9" * 400])
    assert str(exc.value).startswith("<defaults> + overrides: key 'n_envs' must be >= 1, got -999")
    assert str(exc.value).endswith("...") and len(str(exc.value)) < 150
    assert load_config(Train, None, ["n_envs=" + "9" * 400]).n_envs == int("9" * 400)


def test_in_range_values_and_none_pass() -> None:
    cfg = load_config(Train, None, ["n_envs=1", "agent.tau=1", "agent.target_entropy=null", "agent.net_arch=[1]"])
    assert (cfg.n_envs, cfg.agent.tau, cfg.agent.target_entropy, cfg.agent.net_arch) == (1, 1.0, None, [1])


def test_yaml_file_and_typed_overrides_are_checked_too(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("agent:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: key 'agent\.batch_size' must be >= 1, got 0"):
        load_config(Train, p)
    with pytest.raises(ConfigError, match=r"key 'agent\.total_timesteps' must be >= 1, got -5"):
        load_config(Train, None, [("agent.total_timesteps", -5)])  # a flag's typed value (--timesteps -5)
    with pytest.raises(ConfigError, match=r"key 'extra\[0\]\.batch_size' must be >= 1, got 0"):
        from_dict(Train, {"extra": [{"batch_size": 0}]}, source="run.yaml")


def test_configs_built_in_code_are_checked_by_validate() -> None:
    assert validate(Train()) == Train()
    with pytest.raises(ConfigError, match=r"^Train: key 'agent\.batch_size' must be >= 1, got 0$"):
        validate(Train(agent=Agent(batch_size=0)))
    with pytest.raises(ConfigError, match=r"key 'extra\[1\]\.learning_rate' must be > 0.0, got -1"):
        validate(Train(extra=[Agent(), Agent(learning_rate=-1)]), source="Train")
    with pytest.raises(ConfigError, match="expects a number >= 1, got '2'"):
        validate(Train(n_envs="2"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="got True"):
        validate(Train(n_envs=True))


def test_field_bounds_reads_the_metadata_and_rejects_a_malformed_bound() -> None:
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(Agent)}
    assert field_bounds(fields["tau"]) == {"gt": 0.0, "le": 1.0}
    assert field_bounds(fields["batch_size"]) == {"ge": 1}

    @dataclass
    class Bad:
        x: int = field(default=1, metadata={"ge": "1"})

    with pytest.raises(TypeError, match="range bound ge='1'"):
        validate(Bad())


def test_missing_required_key_and_post_init_value_errors_are_config_errors() -> None:
    @dataclass
    class Needs:
        name: str
        steps: int = 1

        def __post_init__(self) -> None:
            if self.steps == 3:
                raise ValueError("steps may not be 3")

    with pytest.raises(ConfigError, match=r"^x\.yaml: missing key\(s\) \['name'\]$"):
        from_dict(Needs, {}, source="x.yaml")
    with pytest.raises(ConfigError, match=r"^x\.yaml: 'Needs': steps may not be 3$"):
        from_dict(Needs, {"name": "a", "steps": 3}, source="x.yaml")
    # a real class whose __post_init__ raises ValueError, as a section of a config file
    with pytest.raises(ConfigError, match=r"^t\.yaml: 'adapt': adaptation needs steps"):
        from_dict(WithAdapt, {"adapt": {"steps": -1}}, source="t.yaml")
    assert from_dict(WithAdapt, {"adapt": {"steps": 2}}).adapt == AdaptConfig(steps=2)


@dataclass
class WithAdapt:
    adapt: AdaptConfig = field(default_factory=AdaptConfig)


# --------------------------------------------------------------------------- the project's configs


@pytest.mark.parametrize("cls, override, key", [
    (EnvConfig, "crop_size=0", "crop_size"),
    (EnvConfig, "context=-0.1", "context"),
    (EnvConfig, "action_n_std=0", "action_n_std"),
    (EnvConfig, "lost_iou=1.5", "lost_iou"),
    (EnvConfig, "lost_frames=-1", "lost_frames"),
    (EnvConfig, "max_tracks=-2", "max_tracks"),
    (EnvConfig, "data.cache_mb=-1", "data.cache_mb"),
    (EnvConfig, "data.filters.max_box_fraction=0", "data.filters.max_box_fraction"),
    (EnvConfig, "data.filters.min_frames=0", "data.filters.min_frames"),
    (DataConfig, "filters.max_box_fraction=-0.5", "filters.max_box_fraction"),
    (TrackFilter, "min_frames=0", "min_frames"),
])
def test_env_and_data_ranges(cls: type, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"<defaults> \+ overrides: key '{key}' must be"):
        load_config(cls, None, [override])


def test_env_extra_data_entries_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"key 'extra_data\[0\]\.filters\.min_frames' must be >= 1, got 0"):
        from_dict(EnvConfig, {"extra_data": [{"filters": {"min_frames": 0}}]}, source="env.yaml")


@pytest.mark.parametrize("override, key", [
    ("batch_size=0", "batch_size"), ("lr_min=-1", "lr_min"), ("lr_max=0", "lr_max"), ("cycle_steps=1", "cycle_steps"),
    ("epochs=0", "epochs"), ("max_steps=-1", "max_steps"), ("time_budget_min=-5", "time_budget_min"),
    ("seed=-1", "seed"), ("num_workers=-1", "num_workers"), ("threads=-2", "threads"),
    ("checkpoint_every=-1", "checkpoint_every"), ("log_every=0", "log_every"),
    ("val_max_patches=-1", "val_max_patches"), ("sample_masks=-1", "sample_masks"),
    ("weight_decay=-0.1", "weight_decay"), ("grad_clip=-1", "grad_clip"),
    ("data.filters.max_box_fraction=0", "data.filters.max_box_fraction"),
])
def test_pretrain_ranges(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"key '{key}' must be"):
        load_pretrain_config(None, [override])


def test_pretrain_config_built_in_code_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"pretrain config: key 'batch_size' must be >= 1, got 0"):
        PretrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"key 'data\.filters\.min_frames' must be >= 1, got 0"):
        PretrainConfig(data=DataConfig(filters=TrackFilter(min_frames=0)))
    with pytest.raises(ConfigError, match="lr_min <= lr_max"):
        PretrainConfig(lr_min=1e-2, lr_max=1e-3)
    cfg = PretrainConfig()
    assert load_pretrain_config(None, []) == cfg  # the defaults are in range


def test_shipped_yaml_configs_are_in_range() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    for path in sorted(configs.glob("pretrain_*.yaml")):
        load_pretrain_config(path)


def test_data_flag_out_of_range_is_a_config_error(tmp_path: Path) -> None:
    import argparse

    from bmvtrack.cli import add_data_args, data_config_from_args

    p = argparse.ArgumentParser()
    add_data_args(p)
    args = p.parse_args(["--data", str(tmp_path), "--max-box-fraction", "-1"])
    with pytest.raises(ConfigError, match=r"--max-box-fraction: key 'max_box_fraction' must be > 0.0, got -1.0"):
        data_config_from_args(args)


@pytest.mark.parametrize("argv, shown", [
    (["--timesteps", "-5"], "key 'agent.total_timesteps' must be >= 1, got -5"),
    (["--set", "n_envs=0"], "key 'n_envs' must be >= 1, got 0"),
    (["--set", "agent.batch_size=0"], "key 'agent.batch_size' must be >= 1, got 0"),
    (["--set", "agent.learning_rate=-1"], "key 'agent.learning_rate' must be > 0.0, got -1.0"),
])
def test_train_sac_rejects_meaningless_numbers_in_one_line(argv: list[str], shown: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Once agents/train_sac.py declares its ranges (``ranged``), these stop before any training."""
    import dataclasses

    import bmvtrack.agents.train_sac
    from bmvtrack.agents.train_sac import AgentConfig
    from bmvtrack import train_sac
    from bmvtrack.cli import run_main

    if not field_bounds({f.name: f for f in dataclasses.fields(AgentConfig)}["total_timesteps"]):
        pytest.skip("agents/train_sac.py's AgentConfig declares no ranges yet")
    ran = []
    monkeypatch.setattr(bmvtrack.agents.train_sac, "train", lambda *a, **k: ran.append(1))  # nothing may start
    monkeypatch.setattr(sys, "argv", ["train_sac", *argv, "--no-wandb"])
    with pytest.raises(SystemExit) as exc:
        run_main(train_sac.main)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and not ran
    assert err == f"error: <defaults> + overrides: {shown}\n"


# --------------------------------------------------------------------------- text stays text


HOSTILE_NAMES = [
    "/x/run #1", "run#1", "a: b", "key: value: more", "*star", "&anchor", "&a x", "!tag", "!!python/object:os.system",
    "yes", "no", "on", "off", "true", "False", "null", "~", "None", "007", "010", "1e3", "0x1F", "1_000", "[1, 2]",
    "{a: 1}", "- item", "%percent", "@at", "`tick", "|", ">", "a,b", " spaced ", "tab\there", "ünïcødé #ok",
    "? question", "2024-01-01",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_string_fields_take_text_as_written(name: str) -> None:
    cfg = load_config(Train, None, [f"out_dir={name}", f"tag={name}", f"folder={name}", f"encoder={name}"]
                      if name not in ("null", "~") else [f"tag={name}", f"folder={name}"])
    assert cfg.tag == name and cfg.folder == Path(name)
    if name not in ("null", "~"):
        assert cfg.out_dir == name and cfg.encoder == name


@pytest.mark.parametrize("name", HOSTILE_NAMES + ["", "null", "~"])
def test_typed_overrides_are_never_parsed(name: str) -> None:
    cfg = load_config(Train, None, [("out_dir", name), ("tag", name), ("folder", Path(name or "."))])
    assert cfg.out_dir == name and cfg.tag == name and cfg.folder == Path(name or ".")
    cfg = load_config(Train, None, {"encoder": name})  # a mapping of typed values works too
    assert cfg.encoder == name


def test_none_numbers_and_quotes_where_they_mean_something() -> None:
    cfg = load_config(Train, None, ["out_dir=null", "encoder=~", "seed=007", "agent.batch_size=010",
                                    "agent.learning_rate=5e-4", "agent.total_timesteps=20_000", 'tag="quoted #1"',
                                    "folder='single'"])
    assert cfg.out_dir is None and cfg.encoder is None
    assert cfg.seed == 7 and cfg.agent.batch_size == 10  # decimal, not YAML 1.1 octal (8)
    assert cfg.agent.learning_rate == 5e-4 and cfg.agent.total_timesteps == 20_000
    assert cfg.tag == "quoted #1" and cfg.folder == Path("single")
    with pytest.raises(ConfigError, match="'algo' must be one of"):
        load_config(Train, None, ["algo=yes"])  # a Literal field: 'yes' stays text, then is refused
    with pytest.raises(ConfigError, match="expects an integer"):
        load_config(Train, None, ["seed=#1"])


def test_json_quoted_flag_values_keep_working() -> None:
    """pretrain_vae's flags (and tests) JSON-quote strings: they must still arrive unchanged."""
    for name in ("/x/run #1", "yes", "007", "null", "a: b", "ü"):
        cfg = load_pretrain_config(None, [f"out_dir={json.dumps(name)}", f"tag={json.dumps(name)}"])
        assert cfg.out_dir == name and cfg.tag == name


def test_untyped_overrides_keep_text_too() -> None:
    """Without the config class (a resumed run's stored mapping), YAML decides but text stays text."""
    from bmvtrack.config import apply_overrides

    data: dict = {"out_dir": "x", "agent": {"batch_size": 1}}
    apply_overrides(data, ["out_dir=/x/run #1", "agent.batch_size=64", "tag=&anchor", "encoder=*alias",
                           "seed=null", "n_envs=[1,"])
    assert data == {"out_dir": "/x/run #1", "agent": {"batch_size": 64}, "tag": "&anchor", "encoder": "*alias",
                    "seed": None, "n_envs": "[1,"}
    assert parse_override_value("yes") is True and parse_override_value("1e-3") == "1e-3"  # from_dict reads the float


def test_train_config_paths_survive_the_command_line_shortcuts(monkeypatch: pytest.MonkeyPatch) -> None:
    """``train_sac --out "/x/run #1" --encoder 007`` reaches the config unchanged."""
    import bmvtrack.agents.train_sac
    from bmvtrack import train_sac

    seen = {}

    def fake_train(cfg, **_kw):
        seen["cfg"] = cfg
        return {"run_dir": cfg.out_dir, "final": {}}

    monkeypatch.setattr(bmvtrack.agents.train_sac, "train", fake_train)
    assert train_sac.main(["--out", "/x/run #1", "--encoder", "007", "--no-wandb"]) == 0
    assert seen["cfg"].out_dir == "/x/run #1" and seen["cfg"].encoder == "007"
    assert train_sac.main(["--out", "yes: no & *x !y", "--no-wandb"]) == 0
    assert seen["cfg"].out_dir == "yes: no & *x !y"


def test_saved_config_round_trips_hostile_names(tmp_path: Path) -> None:
    cfg = load_config(Train, None, [("out_dir", "/x/run #1"), ("tag", "yes"), ("encoder", "007")])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(Train, tmp_path / "c.yaml") == cfg
    assert to_dict(cfg)["tag"] == "yes"


# --------------------------------------------------------------------------- visualize --sequence


def test_unknown_sequence_is_one_line_listing_the_names(moving_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from bmvtrack import visualize
    from bmvtrack.cli import run_main

    monkeypatch.setattr(sys, "argv", ["visualize", "--data", str(moving_root), "--trackers", "zero",
                                      "--sequence", "nope", "--out", str(tmp_path / "out"), "--no-wandb"])
    with pytest.raises(SystemExit) as exc:
        run_main(visualize.main)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
    ds_names = [t.sequence for t in visualize.VideoDataset(moving_root, "davis2017").tracks()]
    assert err.startswith("error: --sequence 'nope': no such sequence or track; valid: ")
    assert all(n in err for n in ds_names)
    assert not (tmp_path / "out").exists()  # nothing written before the error


def test_long_sequence_lists_are_truncated() -> None:
    from types import SimpleNamespace

    from bmvtrack.visualize import MAX_LISTED, pick_track

    tracks = [SimpleNamespace(name=f"video{i:03d}/1", sequence=f"video{i:03d}") for i in range(300)]
    ds = SimpleNamespace(tracks=lambda: tracks, root=Path("/data"))
    with pytest.raises(ConfigError) as exc:
        pick_track(ds, "nope")  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "\n" not in msg and f"({600 - MAX_LISTED} more)" in msg and len(msg) < 600
    assert pick_track(ds, "video007") is tracks[7] and pick_track(ds, "video008/1") is tracks[8]  # type: ignore[arg-type]
