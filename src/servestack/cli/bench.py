"""`bench`: load-test any OpenAI-compatible server (servestack's gateway, an engine, a peer).

`servestack.bench` (aiohttp and the rest) is imported when the command runs, not when the CLI
starts: every other command, `up` above all, starts that much sooner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from servestack.cli.app import app, console, run_async, styled
from servestack.errors import BenchError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from servestack.bench import Limits, Summary
    from servestack.bench.loadgen import Counters, Level
    from servestack.bench.report import BenchConfig

ENDPOINTS = ("chat", "completions")

T = TypeVar("T")
DURATION_WORKLOAD_REQUESTS = 2000  # conversations prepared per level when a run is bound by time


@app.command()
def bench(
    url: str = typer.Argument("http://127.0.0.1:8000/v1", help="Server URL (host:port, …/v1 or a full endpoint)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model to ask for (default: the first listed)."),
    endpoint: str = typer.Option("chat", help="chat (/v1/chat/completions) or completions (/v1/completions)."),
    concurrency: str | None = typer.Option(
        None, "--concurrency", "-c", help="Clients at once (default 8); 1,8,32 sweeps."
    ),
    rate: str | None = typer.Option(None, "--rate", "-r", help="Poisson arrivals per second; 5,10 sweeps."),
    requests: int | None = typer.Option(None, "--requests", "-n", help="Requests per level (default 100)."),
    duration: float | None = typer.Option(None, "--duration", "-d", help="Seconds per level (instead of -n)."),
    dataset: str = typer.Option(
        "random",
        help="random | shared-prefix | multi-turn | FILE.jsonl (shared-prefix: --input-len is the "
        "shared system prompt; multi-turn: per turn).",
    ),
    input_len: int = typer.Option(128, help="Prompt length in words (about one token each)."),
    output_len: int = typer.Option(64, help="max_tokens of each request."),
    turns: int = typer.Option(4, help="Turns per conversation (multi-turn)."),
    ttft_slo: str | None = typer.Option(None, help="Goodput: time to first token at most this (0.5, 500ms)."),
    tpot_slo: str | None = typer.Option(None, help="Goodput: time per output token at most this (50ms)."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Stream answers (TTFT and ITL need it)."),
    api_key: str | None = typer.Option(None, "--api-key", help="Sent as Authorization: Bearer KEY."),
    seed: int = typer.Option(0, help="Seed of the dataset and the arrivals."),
    warmup: int = typer.Option(0, help="Requests sent before measuring (not counted)."),
    timeout: float = typer.Option(600.0, help="Seconds a request may take in all."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results as JSON to this file."),
    plot_path: Path | None = typer.Option(None, "--plot", help="Plot latency against load to this PNG."),
) -> None:
    """Measure TTFT, inter-token latency, TPOT, end-to-end latency, throughput and goodput.

    Examples: `servestack bench -c 1,8,32 -n 200`; `servestack bench http://gpu1:8000 -r 4 -d 60
    --dataset shared-prefix --ttft-slo 500ms --json out.json --plot out.png`.
    """
    from servestack.bench import Limits, Slo, Target, api_base, build_workload, run_levels
    from servestack.bench.report import BenchConfig, document, write_json
    from servestack.bench.runner import ENDPOINTS as PATHS

    if endpoint not in ENDPOINTS:
        raise BenchError(f"unknown endpoint {endpoint!r}", fix="use chat or completions")
    levels = parse_levels(concurrency, rate)
    if requests is None and duration is None:
        requests = 100
    limits = Limits(requests=requests, duration=duration)
    slo = Slo(ttft=parse_seconds(ttft_slo, "--ttft-slo"), tpot=parse_seconds(tpot_slo, "--tpot-slo"))
    per_level = requests if requests is not None else DURATION_WORKLOAD_REQUESTS
    workload = build_workload(
        dataset, requests=per_level * len(levels) + warmup, input_len=input_len, output_len=output_len,
        seed=seed, turns=turns,
    )  # fmt: skip
    base = api_base(url)
    model = run_async(_check_target(base, api_key, model))
    target = Target(url=base + PATHS[endpoint], model=model, stream=stream, api_key=api_key)
    config = BenchConfig(base, model, stream, workload.name, input_len, output_len, seed, requests, duration, slo)
    labels = ", ".join(lv.label for lv in levels)
    console.print(f"{target.url} · model {model} · {workload.name} · {labels}", style="dim")
    with _progress() as progress:
        summaries = run_async(
            run_levels(
                target, workload, levels, limits, slo=slo, seed=seed, warmup=warmup, timeout=timeout,
                monitor=ProgressMonitor(progress),
            )
        )  # fmt: skip
    _render(summaries, config)
    if json_path is not None:
        write_json(json_path, document(summaries, config))
        console.print(f"wrote {json_path}", style="dim")
    if plot_path is not None:
        from servestack.bench.plot import plot_latency

        plot_latency(summaries, plot_path, title=f"{model} at {base} ({workload.name})")
        console.print(f"wrote {plot_path}", style="dim")


def parse_levels(concurrency: str | None, rate: str | None) -> list[Level]:
    from servestack.bench import Concurrency, Rate

    if concurrency is not None and rate is not None:
        raise BenchError("give --concurrency or --rate, not both")
    if rate is not None:
        return [Rate(r) for r in _numbers(rate, "--rate", float)]
    return [Concurrency(int(c)) for c in _numbers(concurrency or "8", "--concurrency", int)]


def _numbers(text: str, flag: str, kind: Callable[[str], float]) -> list[float]:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchError(f"{flag} {text!r}: expected numbers separated by commas") from None
    if not values or any(v <= 0 for v in values):
        raise BenchError(f"{flag} {text!r}: expected positive numbers separated by commas")
    return values


def parse_seconds(text: str | None, flag: str) -> float | None:
    """'0.5', '0.5s' or '500ms' → seconds."""
    if text is None:
        return None
    raw = text.strip().lower()
    scale = 1.0
    if raw.endswith("ms"):
        raw, scale = raw[:-2], 0.001
    elif raw.endswith("s"):
        raw = raw[:-1]
    try:
        value = float(raw) * scale
    except ValueError:
        raise BenchError(f"{flag} {text!r}: expected seconds, e.g. 0.5, 0.5s or 500ms") from None
    if value <= 0:
        raise BenchError(f"{flag} must be positive")
    return value


class ProgressMonitor:
    """A live progress bar per load level, and one line when a level ends."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.by_time = False

    def level_started(self, level: Level, limits: Limits) -> None:
        self.by_time = limits.requests is None
        total = limits.duration if self.by_time else limits.requests
        self.task = self.progress.add_task(level.label, total=total, errors=0)

    def tick(self, counters: Counters, elapsed: float) -> None:
        if self.task is not None:
            done = elapsed if self.by_time else counters.done
            self.progress.update(self.task, completed=done, errors=counters.errors)

    def level_finished(self, summary: Summary) -> None:
        if self.task is not None:
            task = self.progress.tasks[self.task]
            self.progress.update(self.task, completed=task.total, errors=sum(summary.errors.values()))


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description:>18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[errors]} errors", style="red"),
        TimeElapsedColumn(),
        console=console,
    )


def _render(summaries: list[Summary], config: BenchConfig) -> None:
    from servestack.bench.report import latency_table, notes, throughput_table

    console.print(throughput_table(summaries))
    console.print(latency_table(summaries))
    for note in notes(summaries, config):
        console.print(styled(("note:", "yellow"), f" {note}"))


async def _check_target(base: str, api_key: str | None, model: str | None) -> str:
    """The model to load: the one given, else the first the server lists; refused keys stop here."""
    from servestack.bench import Target
    from servestack.bench.client import make_session
    from servestack.bench.runner import detect_model, served_models

    async with make_session(Target(url=base, model="", api_key=api_key), timeout=10) as session:
        if model is None:
            return await detect_model(session, base)
        await served_models(session, base)
        return model
