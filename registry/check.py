"""``obmin registry check DIR``: validate a registry directory and say what is wrong."""

from __future__ import annotations

from pathlib import Path

from registry.errors import RegistryInvalid
from registry.loader import load_registry

__all__ = ["check_registry"]


def check_registry(directory: Path | str) -> tuple[int, str]:
    """Validate ``directory``; return the exit code and the text to print.

    Every problem is printed on its own line as ``FILE:LINE: KEY.PATH: message`` and the
    exit code is 1; a valid registry gives a one-line summary and 0.
    """
    path = Path(directory)
    try:
        registry = load_registry(path)
    except RegistryInvalid as exc:
        return 1, "\n".join(str(issue) for issue in exc.issues)
    counts = registry.counts
    return 0, (
        f"registry OK: {counts.members} members, {counts.subsystems} subsystems, "
        f"{counts.services} services, {counts.access_rules} access rules ({path})"
    )
