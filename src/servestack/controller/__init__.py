"""The running instance: gateway and supervisor in one process, and how other processes reach it."""

from servestack.controller.client import instance_running, service_action
from servestack.controller.controller import Controller, Reporter, claim_instance
from servestack.controller.instance import StopReport, launch_detached, stop_instance, wait_detached
from servestack.controller.smoke import SmokeResult, smoke_service

__all__ = [
    "Controller",
    "Reporter",
    "SmokeResult",
    "StopReport",
    "claim_instance",
    "instance_running",
    "launch_detached",
    "service_action",
    "smoke_service",
    "stop_instance",
    "wait_detached",
]
