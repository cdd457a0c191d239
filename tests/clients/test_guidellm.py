"""guidellm, in chat mode (content parts, `max_completion_tokens`, `include_usage`) and completions mode,
for a few requests against both engines.

guidellm needs torch, so it runs from a venv of its own (`scripts/setup-guidellm.sh`); `pytest -m
guidellm` runs this file (CI does, after that script).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.guidellm]

VENV = Path(os.environ.get("SERVESTACK_GUIDELLM_VENV", Path.home() / ".cache" / "servestack" / "guidellm"))
REQUESTS = 3
MAX_TOKENS = 8


@pytest.mark.parametrize("request_format", ["/v1/chat/completions", "/v1/completions"])
def test_guidellm_runs_every_request(stack: Stack, model: str, request_format: str, tmp_path: Path) -> None:
    guidellm = VENV / "bin" / "guidellm"
    if not guidellm.exists():
        pytest.fail(f"guidellm is not installed at {VENV}: run scripts/setup-guidellm.sh")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is the capital of France?\nCount to five.\nName a colour.\n")
    report = tmp_path / "report.json"
    answered_before = stack.metric(model, 200)
    backend = (
        f"kind=openai_http,target={stack.url},model={model},request_format={request_format},max_tokens={MAX_TOKENS}"
    )
    run = subprocess.run(
        [
            str(guidellm), "run", "--backend", backend, "--profile", "kind=synchronous",
            "--constraint", f"kind=max_requests,count={REQUESTS}", "--data", f"kind=text_file,path={prompts}",
            "--output", f"kind=json,path={report}", "--disable-console-interactive",
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    requests = json.loads(report.read_text())["benchmarks"][0]["requests"]
    outcome = {kind: len(found) for kind, found in requests.items() if isinstance(found, list)}
    # guidellm's scheduler now and then cancels its last queued request before sending it (its
    # max_requests stop races the worker; seen once in CI), so the check is on what it did send: every
    # request the gateway answered came back to guidellm a success, none errored or cut short.
    answered = stack.metric(model, 200) - answered_before
    assert outcome.get("errored") == 0 and outcome.get("incomplete") == 0, (outcome, requests)
    assert REQUESTS - 1 <= outcome.get("successful", 0) == answered, (outcome, answered)
    assert all(0 < r["output_tokens"] <= MAX_TOKENS for r in requests["successful"])
    if request_format.endswith("chat/completions"):
        sent = json.loads(requests["successful"][0]["request_args"])["body"]
        assert "max_completion_tokens" in sent and isinstance(sent["messages"][0]["content"], list)
