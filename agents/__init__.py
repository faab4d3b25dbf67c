"""Agents acting in the bmvtrack environment: MV-SAC (an SB3 extension) and the baseline trackers."""

if __name__ != "bmvtrack.agents":  # e.g. `import agents` from the repository root: a second copy of every module
    raise ImportError("agents/ is installed as the package bmvtrack.agents; import bmvtrack.agents, not agents "
                      "(a second copy would register every tracker twice)")

from bmvtrack.agents.mvsac import MVSAC, MVSACPolicy

__all__ = ["MVSAC", "MVSACPolicy"]
