"""Which inspector hosts mean "every interface" (and so get the warning)."""

from __future__ import annotations

import pytest

from reloadd.setup.inspector import listens_on_all_interfaces

EVERY = ["0.0.0.0", "::", "::0", "[::0]", "0:0:0:0:0:0:0:0", "0", "0.0", "0x0", "000", "::%eth0"]
NOT_EVERY = ["127.0.0.1", "::1", "localhost", "10.0.0.1", "0.0.0.1", "", "example.com", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("host", EVERY)
def test_unspecified_addresses_in_any_spelling(host: str) -> None:
    assert listens_on_all_interfaces(host)


@pytest.mark.parametrize("host", NOT_EVERY)
def test_other_hosts(host: str) -> None:
    assert not listens_on_all_interfaces(host)
