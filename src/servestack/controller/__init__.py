"""The running instance: gateway and supervisor in one process, and how other processes reach it."""

from servestack.controller.client import instance_running, service_action
from servestack.controller.controller import Controller, Reporter, claim_instance
from servestack.controller.instance import StopReport, launch_detached, stop_instance, wait_detached

__all__ = [
    "Controller",
    "Reporter",
    "StopReport",
    "claim_instance",
    "instance_running",
    "launch_detached",
    "service_action",
    "stop_instance",
    "wait_detached",
]
