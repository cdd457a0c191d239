"""Stand-ins for apptainer, docker, podman, pixi, conda and nvidia-smi: record the call, then act like the tool.

Invoked as `fake_tool.py TOOL ARGS...` by small wrappers named after each tool (tests put them on
PATH). `exec`/`run` calls really run the inner command, so the engine behind them (the fake SGLang)
is a real subprocess; `python`/`python3` inside a "container" or environment is this interpreter.
Only the standard library: it runs under whatever Python the wrapper names.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from record import record

NVIDIA_SMI = """Sun Nov 22 03:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA H200 NVL                On  |   00000000:17:00.0 Off |                    0 |
+-----------------------------------------------------------------------------------------+
"""
APPTAINER_FLAGS_WITH_VALUE = {"--bind", "-B", "--env", "--home", "--pwd", "--overlay"}
DOCKER_FLAGS_WITH_VALUE = {"--name", "--gpus", "--device", "-p", "-v", "-e", "--ipc", "--entrypoint", "--shm-size",
                           "--memory", "--memory-reservation", "--network"}  # fmt: skip


def run_inner(argv: list[str], env: dict[str, str]) -> None:
    if argv and argv[0] in ("python", "python3"):
        argv = [sys.executable, *argv[1:]]
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


def nvidia_smi(args: list[str]) -> None:
    if os.environ.get("FAKE_NO_DRIVER"):
        print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
        sys.exit(9)
    print(NVIDIA_SMI.format(cuda=os.environ.get("FAKE_CUDA_VERSION", "12.8")))


def pixi(args: list[str]) -> None:
    assert args[0] == "run", args
    rest, environment = args[1:], "default"
    while rest and rest[0].startswith("--"):
        if rest[0] == "--environment":
            environment = rest[1]
        rest = rest[2:]
    run_inner(rest, {**os.environ, "FAKE_ENV_PIXI": environment})


def conda(args: list[str]) -> None:
    assert args[:2] == ["run", "-n"], args
    rest = [a for a in args[3:] if a != "--no-capture-output"]
    run_inner(rest, {**os.environ, "FAKE_ENV_CONDA": args[2]})


def apptainer(args: list[str]) -> None:
    if args[0] == "pull":
        target = next(a for a in args[1:] if not a.startswith("--"))
        Path(target).write_text("fake SIF\n")
        print(f"INFO:    Creating SIF file... {target}")
        return
    assert args[0] == "exec", args
    i = 1
    while args[i].startswith("-"):
        i += 2 if args[i] in APPTAINER_FLAGS_WITH_VALUE else 1
    image, inner = args[i], args[i + 1 :]
    prefix = "APPTAINERENV_"
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    env.update({k[len(prefix) :]: v for k, v in os.environ.items() if k.startswith(prefix)})
    run_inner(inner, {**env, "FAKE_ENV_IMAGE": image})


def docker(args: list[str]) -> None:
    if args[0] == "pull":
        print(f"latest: Pulling from {args[1]}\nStatus: Downloaded newer image for {args[1]}")
        return
    if args[0] in ("stop", "rm") or args[:2] == ["container", "inspect"]:  # by name: the "container" is the
        # process `run` became, stopped by its group
        print(f"Error: No such container: {args[-1]}", file=sys.stderr)
        sys.exit(1)
    assert args[0] == "run", args
    i, entrypoint, names = 1, None, []
    while args[i].startswith("-"):
        if args[i] == "--entrypoint":
            entrypoint = args[i + 1]
        if args[i] == "-e":
            names.append(args[i + 1])
        i += 2 if args[i] in DOCKER_FLAGS_WITH_VALUE else 1
    image, rest = args[i], args[i + 1 :]
    # A container sees only what `-e NAME` passes, plus what its image sets.
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("FAKE_IMAGE_PYTHONPATH", ""),
           "FAKE_RECORD": os.environ.get("FAKE_RECORD", ""), "FAKE_ENV_IMAGE": image}  # fmt: skip
    env.update({name: os.environ[name] for name in names if name in os.environ})
    run_inner([entrypoint, *rest] if entrypoint else rest, env)


# podman takes docker's command line.
TOOLS = {
    "nvidia-smi": nvidia_smi,
    "pixi": pixi,
    "conda": conda,
    "apptainer": apptainer,
    "docker": docker,
    "podman": docker,
}

if __name__ == "__main__":
    tool, args = sys.argv[1], sys.argv[2:]
    record(tool, args)
    TOOLS[tool](args)
