"""Agents acting in the bmvtrack environment: MV-SAC (an SB3 extension) and, later, baseline trackers."""

from bmvtrack.agents.mvsac import MVSAC, MVSACPolicy

__all__ = ["MVSAC", "MVSACPolicy"]
