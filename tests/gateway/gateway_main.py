"""`python -m tests.gateway.gateway_main HOME PORT`: a production gateway and a ProdEngine in one
process, for tests that kill it (-9). Prints `ready` once it serves; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.gateway.prod_harness import production_gateway

CONFIG = {"auth": {"enabled": True}, "usage": {"flush_interval": 0.1}}


async def main(home: Path) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with production_gateway(home, CONFIG) as gw:
        print(f"ready {gw.url}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
