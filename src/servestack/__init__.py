"""servestack: run every LLM you host from one stack file."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("servestack")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
