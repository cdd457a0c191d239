"""`servestack bench` end to end, as a user runs it, against a fake server: the JSON output's counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.fake_openai import FakeOpenAI
from tests.conftest import run_cli


def test_bench_sweep_writes_json_with_usage_counts(fake: FakeOpenAI, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = run_cli(
        "bench", fake.url, "-c", "1,4", "-n", "12", "--input-len", "20", "--output-len", "6",
        "--ttft-slo", "30s", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Throughput" in result.stdout and "concurrency 4" in result.stdout
    doc = json.loads(out.read_text())
    assert doc["config"]["model"] == "fake-model"  # found at /v1/models
    levels = doc["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    for level in levels:
        assert (level["requests"], level["completed"], level["errors"]) == (12, 12, {})
        assert level["output_tokens"] == 12 * 6
        assert level["prompt_tokens"] == 12 * 20
        assert level["without_usage"] == 0
        assert level["goodput_fraction"] == 1.0
        assert level["ttft"]["count"] == 12
    assert len(fake.received) == 24


def test_bench_completions_without_stream_to_a_server_without_usage(tmp_path: Path) -> None:
    fake = FakeOpenAI(usage=False).start()
    try:
        out = tmp_path / "r.json"
        result = run_cli(
            "bench", fake.url + "/v1", "--endpoint", "completions", "--no-stream", "-m", "fake-model",
            "--rate", "200", "-n", "8", "--output-len", "3", "--json", str(out),
        )  # fmt: skip
    finally:
        fake.stop()
    assert result.returncode == 0, result.stderr
    assert "no usage" in result.stdout
    (level,) = json.loads(out.read_text())["levels"]
    assert (level["completed"], level["output_tokens"], level["without_usage"], level["rate"]) == (8, 24, 8, 200.0)
    assert all("prompt" in body and "messages" not in body for body in fake.received)


def test_bench_refuses_concurrency_and_rate_together() -> None:
    result = run_cli("bench", "http://127.0.0.1:9", "-c", "2", "-r", "3")
    assert result.returncode == 1
    assert "not both" in result.stderr


def test_bench_plots_latency_against_load(fake: FakeOpenAI, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "latency.png"
    result = run_cli("bench", fake.url, "-c", "1,2", "-n", "6", "--output-len", "3", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


def test_bench_against_a_server_that_needs_a_key_says_pass_api_key() -> None:
    fake = FakeOpenAI(api_key="sk-right").start()
    try:
        for extra in ([], ["--model", "fake-model"]):
            result = run_cli("bench", fake.url, "-n", "3", *extra)
            assert result.returncode == 1
            assert "needs an API key" in result.stderr and "pass --api-key" in result.stderr
            assert "Traceback" not in result.stderr
        wrong = run_cli("bench", fake.url, "-n", "3", "--api-key", "sk-wrong")
        assert wrong.returncode == 1 and "the key was refused" in wrong.stderr
        assert fake.received == []  # refused before any load was sent
        right = run_cli("bench", fake.url, "-n", "3", "--api-key", "sk-right", "--output-len", "2")
        assert right.returncode == 0, right.stderr
        assert len(fake.received) == 3
    finally:
        fake.stop()
