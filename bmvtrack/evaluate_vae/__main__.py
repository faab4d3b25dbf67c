"""Runs `python -m bmvtrack.evaluate_vae` (the command line is in ``bmvtrack.evaluate_vae.command``)."""
from bmvtrack.evaluate_vae.command import main
from bmvtrack.cli import run_main

run_main(main)
