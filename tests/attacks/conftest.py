"""The attack corpus runs against the gateway of the X-Road vector tests (instance EE)."""

from tests.conformance.conftest import make_gateway

__all__ = ["make_gateway"]
