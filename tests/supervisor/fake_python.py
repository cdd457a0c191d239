#!/usr/bin/env python3
"""Stands in for an engine (`python -m llama_cpp.server ...`, or any engine's command that has `--port`):
answers every GET with 200, then exits as told.

FAKE_EXIT_AFTER (seconds, default never) and FAKE_EXIT_CODE (default 1) shape its death;
FAKE_FAIL_START=1 makes it exit before listening. FAKE_STARTUP_LOG names a file whose text it prints
first, as read at each start: a real engine's startup lines, replayed.
"""

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"object":"list","data":[]}')

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    print(f"fake engine on port {port}", flush=True)
    startup_log = os.environ.get("FAKE_STARTUP_LOG")
    if startup_log:
        print(Path(startup_log).read_text(), flush=True)
    if os.environ.get("FAKE_FAIL_START"):
        print("fake engine: cannot start", flush=True)
        sys.exit(3)
    exit_after = os.environ.get("FAKE_EXIT_AFTER")
    if exit_after:
        code = int(os.environ.get("FAKE_EXIT_CODE", "1"))
        timer = threading.Timer(float(exit_after), lambda: (print("fake engine: dying", flush=True), os._exit(code)))
        timer.start()
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


main()
