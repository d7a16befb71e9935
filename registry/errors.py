"""Errors of the registry package: one root, each class with its stable code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

__all__ = ["InvalidIdentifier", "RegistryError", "RegistryInvalid", "RegistryIssue"]


class RegistryError(Exception):
    """Root of every error the registry package raises."""

    code: ClassVar[str] = "InternalError"


class InvalidIdentifier(RegistryError):
    """An X-Road identifier is malformed (empty part, forbidden character, wrong shape)."""

    code: ClassVar[str] = "InvalidClientIdentifier"


@dataclass(frozen=True, slots=True)
class RegistryIssue:
    """One problem found in a registry directory: where it is and what was expected.

    ``str()`` gives the one-line form ``obmin registry check`` prints, e.g.
    ``config/x/services.yaml:14: services[2].url: expected an http(s) URL, got 'ftp://x'``.
    """

    file: Path
    line: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.line is None else f"{self.file}:{self.line}"
        if self.key_path:
            return f"{where}: {self.key_path}: {self.message}"
        return f"{where}: {self.message}"


class RegistryInvalid(RegistryError):
    """A registry directory failed validation; `issues` lists every problem found, in order."""

    code: ClassVar[str] = "InvalidRegistry"

    def __init__(self, directory: Path, issues: tuple[RegistryIssue, ...]) -> None:
        self.directory = directory
        self.issues = issues
        count = len(issues)
        lines = "\n".join(str(issue) for issue in issues)
        super().__init__(
            f"registry {directory} is invalid ({count} problem{'s' if count != 1 else ''}):\n"
            f"{lines}"
        )
