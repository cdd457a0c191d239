"""`sim`: run one simulated engine in the foreground.

The flags belong to the simulator (`servestack.sim.config`, also behind `python -m servestack.sim`);
this command passes them through untouched, so both spellings accept exactly the same flags.
"""

from __future__ import annotations

import typer

from servestack.cli.app import app


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def sim(ctx: typer.Context) -> None:
    """Run a simulated engine with vLLM's API, a latency model, a prefix cache and fault injection.

    Flags: --port --host --model NAME --prefill-rate --decode-rate --max-running --kv-capacity
    --cache-capacity --time-scale --instant --error-rate --crash-after-requests --crash-after-seconds
    --hang --slow-start --warmup --seed …; `servestack sim --help` lists them all.
    """
    from servestack.sim import main as sim_main  # its server stays out of other commands

    sim_main(ctx.args, prog="servestack sim")
