"""The attack corpus runs against the gateway of the X-Road vector tests (instance EE), with
two strict signing subsystems added for the signature-wrapping templates."""

from pathlib import Path

import pytest

from registry.identifiers import MemberId
from security import issue_member_cert, load_private_key
from tests.attacks.wrapping import WrappingSigner
from tests.conformance.conftest import make_gateway

__all__ = ["make_gateway", "wrapping_signer"]


@pytest.fixture(scope="session")
def wrapping_signer(dev_pki: Path, tmp_path_factory: pytest.TempPathFactory) -> WrappingSigner:
    """The EE/BUSINESS/consumer member's signing certificate from the development CA."""
    issued = issue_member_cert(
        dev_pki,
        MemberId("EE", "BUSINESS", "consumer"),
        name="Consumer",
        out_dir=tmp_path_factory.mktemp("wrapping-signer"),
    )
    return WrappingSigner(load_private_key(issued.key_path), issued.cert_path)
