"""The gateway: one OpenAI-compatible HTTP edge in front of every engine."""

from servestack.gateway.app import Gateway
from servestack.gateway.endpoint import Endpoint, EndpointState, EngineLoad
from servestack.gateway.endpoints import EndpointTable
from servestack.gateway.server import GatewayServer
from servestack.gateway.upstream import Upstream

__all__ = ["Endpoint", "EndpointState", "EndpointTable", "EngineLoad", "Gateway", "GatewayServer", "Upstream"]
