"""Fixtures shared by all test packages: a development PKI made by obmin's own PKI code."""

from __future__ import annotations

from pathlib import Path

import pytest

from security import init_pki


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI (CA and gateway signing certificate), made once per test run."""
    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return directory
