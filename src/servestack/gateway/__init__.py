"""The gateway: one OpenAI-compatible HTTP edge in front of every engine.

The endpoint table is light and imported eagerly; the HTTP app, its server and the relay pull in
uvicorn and aiohttp, so they load on first use: `servestack up` starts its engines before that.
"""

from typing import TYPE_CHECKING

from servestack.gateway.fleet.endpoint import Endpoint, EndpointState, EngineLoad
from servestack.gateway.fleet.table import EndpointTable
from servestack.lazy import lazy_attributes

if TYPE_CHECKING:
    from servestack.gateway.edge.app import Gateway
    from servestack.gateway.edge.server import GatewayServer
    from servestack.gateway.relay.upstream import Upstream


__all__ = ["Endpoint", "EndpointState", "EndpointTable", "EngineLoad", "Gateway", "GatewayServer", "Upstream"]

__getattr__ = lazy_attributes(
    __name__, {"Gateway": "edge.app", "GatewayServer": "edge.server", "Upstream": "relay.upstream"}
)
