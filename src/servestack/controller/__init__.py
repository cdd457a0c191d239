"""The running instance: gateway and supervisor in one process, and how other processes reach it.

Names load on first use, so a CLI command imports only the part it needs (`up` must not wait for
the smoke test's or the control client's imports before its engines start).
"""

from typing import TYPE_CHECKING

from servestack.lazy import lazy_attributes

if TYPE_CHECKING:
    from servestack.controller.client import instance_running, remove_model, service_action
    from servestack.controller.controller import Controller, Reporter, claim_instance
    from servestack.controller.instance import StopReport, launch_detached, stop_instance, wait_detached
    from servestack.controller.smoke import SmokeResult, smoke_service

_HOMES = {
    "instance_running": "client",
    "remove_model": "client",
    "service_action": "client",
    "Controller": "controller",
    "Reporter": "controller",
    "claim_instance": "controller",
    "StopReport": "instance",
    "launch_detached": "instance",
    "stop_instance": "instance",
    "wait_detached": "instance",
    "SmokeResult": "smoke",
    "smoke_service": "smoke",
}

__all__ = [
    "Controller",
    "Reporter",
    "SmokeResult",
    "StopReport",
    "claim_instance",
    "instance_running",
    "launch_detached",
    "remove_model",
    "service_action",
    "smoke_service",
    "stop_instance",
    "wait_detached",
]

__getattr__ = lazy_attributes(__name__, _HOMES)
