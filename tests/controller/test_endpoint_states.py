"""Every state a replica can be in reads as some endpoint state to the gateway."""

from __future__ import annotations

import pytest

from servestack.controller.controller import ENDPOINT_STATES
from servestack.supervisor import ReplicaStatus


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="ReplicaStatus.EXITED (branch i10-sup) has no endpoint state until ENDPOINT_STATES (owned by the "
    "gateway side, i10-gw) maps it to DOWN at the merge; remove this mark then",
)
def test_every_replica_status_has_an_endpoint_state() -> None:
    assert [status for status in ReplicaStatus if status not in ENDPOINT_STATES] == []
