"""Runs `python -m bmvtrack.pretrain_vae` (the command line is in ``bmvtrack.pretrain_vae.command``)."""
from bmvtrack.pretrain_vae.command import main
from bmvtrack.cli import run_main

run_main(main)
