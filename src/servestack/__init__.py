"""servestack: run every LLM you host from one stack file."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Read on first use: importlib.metadata costs ~40 ms that `servestack up` would pay before
    # its engines can start.
    if name != "__version__":
        raise AttributeError(f"module 'servestack' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("servestack")
    except PackageNotFoundError:  # running from a source tree without installing
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
