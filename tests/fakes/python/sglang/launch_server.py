"""A fake `python -m sglang.launch_server`: SGLang's flags, log lines and readiness, no model.

Like the real one (reference/engines.md §1.1): argparse rejects unknown parser names with
`invalid choice` (exit 2); the port stays closed while "loading" ($FAKE_LOAD_SECONDS), then /health
answers 503 while "warming up" ($FAKE_WARMUP_SECONDS), then 200. Versions before 0.5.7 lack the
`glm47` tool-call parser. Every call and every /health answer is recorded to $FAKE_RECORD.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from record import record

from sglang import __version__

TOOL_PARSERS = ["deepseekv3", "deepseekv31", "glm", "glm45", "gpt-oss", "kimi_k2", "llama3", "mistral", "pythonic",
                "qwen", "qwen25", "qwen3_coder", "step3"]  # fmt: skip
REASONING_PARSERS = ["deepseek-r1", "deepseek-v3", "glm45", "gpt-oss", "kimi", "qwen3", "qwen3-thinking", "step3"]


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3])


def parser() -> argparse.ArgumentParser:
    tools = TOOL_PARSERS + (["glm47"] if version_tuple(__version__) >= (0, 5, 7) else [])
    p = argparse.ArgumentParser(prog="launch_server.py")
    p.add_argument("--model-path", "--model", required=True)
    p.add_argument("--served-model-name")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--tensor-parallel-size", "--tp-size", "--tp", type=int, default=1)
    p.add_argument("--context-length", type=int)
    p.add_argument("--mem-fraction-static", type=float)
    p.add_argument("--dtype", choices=["auto", "half", "float16", "bfloat16", "float", "float32"], default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--tool-call-parser", choices=tools, help="Specify the parser for handling tool-call interactions.")
    p.add_argument("--reasoning-parser", choices=REASONING_PARSERS)
    p.add_argument("--api-key")
    p.add_argument("--enable-metrics", action="store_true")
    p.add_argument("--disable-cuda-graph-padding", action="store_true")
    return p


class Health(BaseHTTPRequestHandler):
    ready_at = 0.0
    model = ""

    def do_GET(self) -> None:
        if self.path == "/health":
            status = 200 if time.monotonic() >= self.ready_at else 503
            record("sglang-http", [self.path], status=status)
            self._send(status, b"")
        elif self.path == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]}).encode())
        else:
            self._send(404, b'{"detail":"Not Found"}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    record("sglang", sys.argv[1:], version=__version__)
    args = parser().parse_args()
    tp = args.tensor_parallel_size
    print(f"[2026-11-22 03:00:00] server_args=ServerArgs(model_path='{args.model_path}', tp_size={tp})")
    print("[2026-11-22 03:00:01 TP0] Load weight begin. avail mem=78.81 GB", flush=True)
    time.sleep(float(os.environ.get("FAKE_LOAD_SECONDS", "0.5")))
    print("[2026-11-22 03:00:02 TP0] Load weight end. type=LlamaForCausalLM, dtype=torch.bfloat16, avail mem=63.72 GB")
    print("[2026-11-22 03:00:02 TP0] KV Cache is allocated. #tokens: 444500, K size: 27.13 GB, V size: 27.13 GB")
    Health.ready_at = time.monotonic() + float(os.environ.get("FAKE_WARMUP_SECONDS", "0.5"))
    Health.model = args.served_model_name or args.model_path
    server = ThreadingHTTPServer((args.host, args.port), Health)
    print(f"INFO:     Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)", flush=True)
    print("[2026-11-22 03:00:03] The server is fired up and ready to roll!", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
