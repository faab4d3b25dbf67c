"""README's commands as written: the two set-up commands come first, every ``python -m bmvtrack.*`` it
names is a command whose ``--help`` runs and lists every flag README shows for it, and every path it
names is in the repository (except the result pages the main job's evaluation is turned into).

The long-running commands themselves are not run here: ``bash scripts/main.sh --quick`` is
``python -m bmvtrack.pipeline --quick``, which tests/test_pipeline.py runs end to end.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")

COMMAND = re.compile(r"python -m bmvtrack\.(\w+(?:\.\w+)*)")
MAIN_SH = re.compile(r"bash scripts/main\.sh")  # its arguments go to python -m bmvtrack.pipeline
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# where a command's arguments end on a line: a code span, a shell separator, a comment, the next command
END = re.compile(r"`|;|&&|\|| #|python -m |bash scripts/")
PATH = re.compile(r"(?<![\w./-])((?:docs|configs|scripts|tests|benchmarks|bmvtrack|envs|agents|\.ci)/[\w.*/-]*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# written by the main job's evaluation and `python -m bmvtrack.results`, not committed
GENERATED = re.compile(
    r"docs/results/?|docs/results/(index|synthetic-test|davis2016(-folds)?)(\.md|_success\.png)")


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[\w-]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def joined(text: str) -> str:
    """``text`` with shell line continuations joined."""
    return re.sub(r"\\\n\s*", " ", text)


def command_lines(block: str) -> list[str]:
    """The commands of a shell block: continued lines joined, comments and blank lines left out."""
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in joined(block).splitlines())
    return [line for line in lines if line]


def flag_uses(text: str) -> list[tuple[str, str, str]]:
    """(module, flag, where) for every flag README shows for a command. In a table row that names one
    command, every flag of the row is that command's (the commands table's "main flags" column)."""
    uses = []
    for line in joined(text).splitlines():
        modules = set(COMMAND.findall(line))
        if line.lstrip().startswith("|") and len(modules) == 1:
            module = modules.pop()
            uses += [(module, flag, line.strip()) for flag in FLAG.findall(line)]
            continue
        for rx, fixed in ((COMMAND, None), (MAIN_SH, "pipeline")):
            for m in rx.finditer(line):
                rest = END.split(line[m.end():], maxsplit=1)[0]
                module = fixed or m.group(1)
                uses += [(module, flag, line.strip()) for flag in FLAG.findall(rest)]
    return uses


def modules_named() -> list[str]:
    return sorted(set(COMMAND.findall(README)) | {"pipeline"})


@lru_cache(maxsize=1)
def help_texts() -> dict[str, tuple[int, str]]:
    """``python -m bmvtrack.<module> --help`` of every command README names, run side by side."""
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    procs = {m: subprocess.Popen([sys.executable, "-m", f"bmvtrack.{m}", "--help"], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for m in modules_named()}
    out = {}
    for module, proc in procs.items():
        text, _ = proc.communicate(timeout=300)
        out[module] = (proc.returncode, text)
    return out


def test_the_two_setup_commands_come_first():
    first = command_lines(fenced_blocks(README)[0])
    assert first[:2] == ["bash scripts/main.sh", "bash scripts/test.sh"], first
    assert (REPO / "scripts" / "main.sh").is_file() and (REPO / "scripts" / "test.sh").is_file()
    main_sh = (REPO / "scripts" / "main.sh").read_text()
    assert "scripts/setup_env.sh" in main_sh and "-m bmvtrack.pipeline" in main_sh


def test_ci_runs_the_test_script():
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert any("scripts/test.sh" in line for line in ci), ci


@pytest.mark.parametrize("module", modules_named())
def test_readme_command_runs_and_takes_its_flags(module):
    rc, text = help_texts()[module]
    assert rc == 0, f"python -m bmvtrack.{module} --help exited {rc}:\n{text[-2000:]}"
    missing = sorted({(flag, where) for m, flag, where in flag_uses(README)
                      if m == module and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)})
    assert not missing, f"README shows flags that python -m bmvtrack.{module} does not take: {missing}"


def test_flags_are_found():
    """The extraction itself: README's chains and tables do show flags for the main commands."""
    shown = {(m, f) for m, f, _ in flag_uses(README)}
    assert {m for m, _ in shown} >= {"pipeline", "pretrain_vae", "train_sac", "evaluate", "results"}
    assert {("pipeline", "--quick"), ("evaluate", "--policy"), ("train_sac", "--set")} <= shown


def test_readme_paths_exist():
    named = set(PATH.findall(README)) | {t for t in LINK.findall(README) if "://" not in t and not t.startswith("#")}
    missing = []
    for path in sorted(named):
        path = path.rstrip(".,:")
        if GENERATED.fullmatch(path):
            continue
        found = list(REPO.glob(path)) if "*" in path else [REPO / path] if (REPO / path).exists() else []
        if not found:
            missing.append(path)
    assert not missing, f"README names paths the repository does not have: {missing}"


def test_readme_tells_no_history():
    history = [r"(?i)\bsessions?\b", r"(?i)\bissue \d+", r"(?<![\w/])DESIGN\.md", r"\.\./shared"]
    hits = [(p, m.group(0)) for p in history for m in re.finditer(p, README)]
    assert not hits, hits


def test_readme_is_a_manual_not_a_record():
    n = len(README.splitlines())
    assert n <= 260, f"README has {n} lines: keep it a manual (records of runs belong in docs/results)"
