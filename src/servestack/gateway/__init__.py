"""The gateway: one OpenAI-compatible HTTP edge in front of every engine."""

from servestack.gateway.app import Gateway
from servestack.gateway.endpoints import Endpoint, EndpointTable
from servestack.gateway.server import GatewayServer
from servestack.gateway.upstream import Upstream

__all__ = ["Endpoint", "EndpointTable", "Gateway", "GatewayServer", "Upstream"]
