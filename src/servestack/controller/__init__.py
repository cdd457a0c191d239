"""The running instance: gateway and supervisor in one process, and how other processes reach it."""

from servestack.controller.controller import Controller, Reporter, claim_instance
from servestack.controller.instance import StopReport, stop_instance

__all__ = ["Controller", "Reporter", "StopReport", "claim_instance", "stop_instance"]
