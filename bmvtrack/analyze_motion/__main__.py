"""Runs `python -m bmvtrack.analyze_motion` (the command line is in ``bmvtrack.analyze_motion.command``)."""
from bmvtrack.analyze_motion.command import main
from bmvtrack.cli import run_main

run_main(main)
