"""A fake SGLang for tests: its version comes from $FAKE_SGLANG_VERSION."""

import os

__version__ = os.environ.get("FAKE_SGLANG_VERSION", "0.5.7")
