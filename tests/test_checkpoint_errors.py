"""Bad files are one clear line naming the file, never a traceback nor torch's advice.

Checkpoints: every hostile file given to the encoder (``train_sac --encoder``), the segmenter
(``evaluate`` / ``visualize --segmenter``, ``evaluate_vae --checkpoint``) is a one-line
``CheckpointError`` that names the file and never mentions ``weights_only`` (torch's text advises
re-running with ``weights_only=False``: the unsafe thing). A pickle whose ``__reduce__`` would
create a marker file is refused unread. Output paths: an OSError while writing (read-only folder,
a file where a folder should be, a name too long) is ``error: <path>: <reason>``, exit code 2.
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

from bmvtrack.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, state_dict_mismatch
from bmvtrack.cli import error_line, run_main
from bmvtrack.config import to_dict
from bmvtrack.models import ModelConfig, build_model
from bmvtrack.motion import PAPER_COV, PAPER_MEAN, PAPER_TABLE1_STD
from bmvtrack.segmentation import load_segmenter
from bmvtrack.envs.state_encoder import StateEncoder

def tiny_cfg(**kw: object) -> ModelConfig:
    base: dict[str, object] = {"patch_size": 32, "base_width": 8, "decoder_width": 8, "z_channels": 8, "part_size": 4}
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def tiny_state(**kw: object) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model(tiny_cfg(**kw), PAPER_MEAN, PAPER_COV, PAPER_TABLE1_STD).state_dict()


class Payload:
    """Unpickling this would run ``open(marker, 'w')``: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (open, (self.marker, "w"))


def _good(path: Path) -> Path:
    cfg = tiny_cfg()
    save_checkpoint(path, {"kind": "bmvae", "model": tiny_state(), "model_config": to_dict(cfg)})
    return path


def make_hostile(case: str, folder: Path, marker: Path) -> Path:
    """One hostile checkpoint file per case (the name says which)."""
    path = folder / f"{case}.pt"
    if case == "not_torch":
        path.write_text("model: this is a YAML file, not a checkpoint\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        data = _good(folder / "whole.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "truncated_5k":  # the reader fails with an OSError of its own
        data = _good(folder / "whole.pt").read_bytes()
        path.write_bytes(data[:5000])
    elif case == "random_bytes":
        path.write_bytes(bytes(range(256)) * 16)
    elif case == "plain_zip":
        import zipfile

        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "a zip archive, not a checkpoint")
    elif case == "numpy_object":  # a numpy array pickled inside: a global the safe loader refuses
        import numpy as np

        torch.save({"kind": "bmvae", "model": {"w": np.zeros(3)}}, path)
    elif case == "pickle_in_torch":  # a torch zip whose pickle names a callable
        torch.save({"kind": "bmvae", "model": Payload(marker), "model_config": to_dict(tiny_cfg())}, path)
    elif case == "raw_pickle":  # a bare pickle stream (legacy torch format)
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    elif case == "raw_pickle_p4":
        path.write_bytes(pickle.dumps({"kind": "bmvae", "x": Payload(marker)}, protocol=4))
    elif case == "other_kind":
        save_checkpoint(path, {"kind": "adapted", "model": tiny_state()})
    elif case == "plain_tensor":
        torch.save(torch.zeros(3), path)
    elif case == "other_width":  # weights of base_width 16 under a config that says 8
        save_checkpoint(path, {"kind": "bmvae", "model": tiny_state(base_width=16), "model_config": to_dict(tiny_cfg())})
    elif case == "renamed_keys":
        state = {k.replace("backbone.", "trunk."): v for k, v in tiny_state().items()}
        save_checkpoint(path, {"kind": "bmvae", "model": state, "model_config": to_dict(tiny_cfg())})
    elif case == "renamed_prior":
        state = {k.replace("prior_", "p_"): v for k, v in tiny_state().items()}
        save_checkpoint(path, {"kind": "bmvae", "model": state, "model_config": to_dict(tiny_cfg())})
    elif case == "no_model_config":
        save_checkpoint(path, {"kind": "bmvae", "model": tiny_state()})
    elif case == "model_not_a_dict":
        save_checkpoint(path, {"kind": "bmvae", "model": [1, 2], "model_config": to_dict(tiny_cfg())})
    elif case == "bad_model_config":
        save_checkpoint(path, {"kind": "bmvae", "model": tiny_state(), "model_config": {"base_width": -3}})
    elif case == "folder":
        path.mkdir()
    else:
        raise AssertionError(case)
    return path


CASES = ["not_torch", "empty", "truncated", "truncated_5k", "random_bytes", "plain_zip", "numpy_object",
         "pickle_in_torch", "raw_pickle", "raw_pickle_p4", "other_kind",
         "plain_tensor", "other_width", "renamed_keys", "renamed_prior", "no_model_config", "model_not_a_dict",
         "bad_model_config", "folder"]
EXPECT = {  # words the message must hold, beyond the file name
    "not_torch": "not a torch checkpoint", "empty": "empty", "truncated": "truncated",
    "truncated_5k": "truncated", "random_bytes": "not a torch checkpoint", "plain_zip": "unreadable",
    "numpy_object": "refused", "pickle_in_torch": "refused", "raw_pickle": "refused",
    "raw_pickle_p4": "refused", "other_kind": "expected a 'bmvae' checkpoint", "plain_tensor": "not a bmvtrack",
    "other_width": "network does not match its stored config (size mismatch for",
    "renamed_keys": "network does not match its stored config (missing keys",
    "renamed_prior": "network does not match its stored config (missing keys",
    "no_model_config": "no 'model_config'", "model_not_a_dict": "not a state dict",
    "bad_model_config": "base_width", "folder": "folder",
}
LOADERS: dict[str, Callable[[Path], object]] = {
    "encoder_features": lambda p: StateEncoder.from_checkpoint(p, kind="features"),
    "encoder_posterior": lambda p: StateEncoder.from_checkpoint(p, kind="posterior"),
    "encoder_features_motion": lambda p: StateEncoder.from_checkpoint(p, kind="features_motion"),
    "segmenter": lambda p: load_segmenter(p),
}


def assert_one_clear_line(msg: str, path: Path) -> None:
    assert "\n" not in msg, msg
    assert path.name in msg, msg
    assert "weights_only" not in msg and "Traceback" not in msg, msg
    assert len(msg) < 600, msg


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("case", CASES)
def test_hostile_checkpoint_is_one_line_naming_the_file(case: str, loader: str, tmp_path: Path,
                                                        recwarn: pytest.WarningsRecorder) -> None:
    marker = tmp_path / "MARKER_code_ran"
    path = make_hostile(case, tmp_path, marker)
    with pytest.raises(CheckpointError) as exc:
        LOADERS[loader](path)
    msg = str(exc.value)
    assert_one_clear_line(msg, path)
    assert case not in EXPECT or EXPECT[case] in msg, msg
    assert not marker.exists(), "loading the checkpoint ran code from it"
    assert not [w for w in recwarn if "weights_only" in str(w.message)]  # torch's warnings stay quiet too


def test_good_checkpoint_still_loads(tmp_path: Path) -> None:
    path = _good(tmp_path / "good.pt")
    enc = StateEncoder.from_checkpoint(path, kind="features_motion")
    assert enc.patch_size == 32
    model, cfg = load_segmenter(path)
    assert cfg == tiny_cfg() and not model.training


def test_mismatch_lists_keys_and_shapes() -> None:
    expected = {"a": torch.zeros(2), "b": torch.zeros(3, 4), "c": torch.zeros(1)}
    given = {"a": torch.zeros(2), "b": torch.zeros(3, 5), "x": torch.zeros(1)}
    msg = state_dict_mismatch(expected, given)
    assert msg == "missing keys c; unexpected keys x; size mismatch for b: (3, 5) in the file, (3, 4) expected"
    assert state_dict_mismatch(expected, dict(expected)) == ""


def test_refused_payload_never_runs_even_through_load_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER_code_ran"
    for case in ("pickle_in_torch", "raw_pickle", "raw_pickle_p4"):
        path = make_hostile(case, tmp_path, marker)
        with pytest.raises(CheckpointError, match="refused: loading it could run code"):
            load_checkpoint(path)
    assert not marker.exists()
    # the payload is real: an unsafe load would have created the marker
    pickle.loads(pickle.dumps(Payload(marker), protocol=2)).close()
    assert marker.exists()


# ------------------------------------------------------------------ through the commands (run_main)


def run_command(main: Callable, argv: list[str], monkeypatch: pytest.MonkeyPatch,
                capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``run_main(main)`` as ``python -m ...`` runs it: exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["prog", *argv])
    with pytest.raises(SystemExit) as exc:
        run_main(main)
    return int(exc.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("case", ["not_torch", "pickle_in_torch", "other_width", "renamed_keys"])
def test_train_sac_bad_encoder_is_one_line(case: str, moving_root: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bmvtrack import train_sac

    marker = tmp_path / "MARKER_code_ran"
    path = make_hostile(case, tmp_path, marker)
    out = tmp_path / "run"
    code, err = run_command(train_sac.main, [
        "--encoder", str(path), "--out", str(out), "--no-wandb", "--timesteps", "10",
        "--set", f"env.data.root={moving_root}", "--set", "env.data.split=null", "--set", "eval_split=null",
    ], monkeypatch, capsys)
    assert code == 2
    line = err.strip()
    assert line.startswith("error: ") and len(line.splitlines()) == 1, err
    assert_one_clear_line(line, path)
    assert EXPECT.get(case, path.name) in line
    assert not marker.exists()


@pytest.mark.parametrize("command", ["evaluate", "visualize"])
def test_segmenter_flag_with_bad_checkpoint_is_one_line(command: str, moving_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    main = importlib.import_module(f"bmvtrack.{command}").main
    for case in ("truncated", "other_width"):
        path = make_hostile(case, tmp_path, tmp_path / "marker")
        code, err = run_command(main, ["--data", str(moving_root), "--trackers", "segmentation", "--segmenter",
                                       str(path), "--out", str(tmp_path / "out"), "--no-wandb"], monkeypatch, capsys)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        assert_one_clear_line(err.strip(), path)


def test_evaluate_vae_bad_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bmvtrack.evaluate_vae import main

    for case in ("empty", "raw_pickle", "renamed_keys"):
        path = make_hostile(case, tmp_path, tmp_path / "marker")
        assert main(["--checkpoint", str(path), "--no-wandb", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert_one_clear_line(err, path)
    assert not (tmp_path / "marker").exists()


# ------------------------------------------------------------------ writing: OSError is one line


def _visualize_into(out: Path, moving_root: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from bmvtrack import visualize

    return run_command(visualize.main, ["--data", str(moving_root), "--trackers", "zero", "--out", str(out),
                                        "--no-gif", "--no-wandb"], monkeypatch, capsys)


def test_out_below_a_file_is_one_line(moving_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "sub"
    code, err = _visualize_into(out, moving_root, monkeypatch, capsys)
    assert code == 2
    assert err.strip() == f"error: {out}: Not a directory", err  # ENOTDIR, also as root
    assert blocker.read_text() == "a file, not a folder"


def test_out_name_too_long_is_one_line(moving_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / ("x" * 300)
    code, err = _visualize_into(out, moving_root, monkeypatch, capsys)
    assert code == 2
    assert err.startswith(f"error: {out}") and "File name too long" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; ENOTDIR/ENAMETOOLONG cover it")
def test_out_in_a_read_only_folder_is_one_line(moving_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err = _visualize_into(ro / "out", moving_root, monkeypatch, capsys)
        assert code == 2 and err.strip() == f"error: {ro / 'out'}: Permission denied", err
        code, err = _visualize_into(ro, moving_root, monkeypatch, capsys)  # exists, but cannot be written
        assert code == 2 and err.strip() == f"error: {ro}: Permission denied", err
    finally:
        ro.chmod(0o755)


def test_oserror_raised_anywhere_in_a_command_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def disk_full(_argv: list[str] | None) -> int:
        raise OSError(28, "No space left on device", str(tmp_path / "checkpoint.pt"))

    code, err = run_command(disk_full, [], monkeypatch, capsys)
    assert (code, err) == (2, f"error: {tmp_path / 'checkpoint.pt'}: No space left on device\n")
    assert error_line(FileNotFoundError("model.zip: agent model not found")) == "model.zip: agent model not found"
    assert error_line(OSError(18, "Invalid cross-device link", "a", None, "b")) == "a -> b: Invalid cross-device link"


def test_run_folder_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from bmvtrack.run_folder import claim_run_folder

    (tmp_path / "model.zip").write_text("a finished run")

    def second_run(_argv: list[str] | None) -> int:
        claim_run_folder(tmp_path, ["model.zip"])
        return 0

    code, err = run_command(second_run, [], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {tmp_path}: already holds a run")
    assert (tmp_path / "model.zip").read_text() == "a finished run"
