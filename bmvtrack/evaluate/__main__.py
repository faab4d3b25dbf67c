"""Runs `python -m bmvtrack.evaluate` (the command line is in ``bmvtrack.evaluate.command``)."""
from bmvtrack.evaluate.command import main
from bmvtrack.cli import run_main

run_main(main)
