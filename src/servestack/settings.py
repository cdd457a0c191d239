"""Process-wide knobs, all read from `SERVESTACK_*` environment variables in one place.

`servestack env` lists them. Nothing else in servestack reads `os.environ` for its own settings;
a `Settings` object is built once at the edge (the CLI) and passed down.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from servestack.errors import SettingsError


def _default_home() -> Path:
    return Path(platformdirs.user_state_dir("servestack", appauthor=False))


class Settings(BaseSettings):
    """servestack's own configuration (the stack file configures what it runs)."""

    model_config = SettingsConfigDict(env_prefix="SERVESTACK_", extra="ignore", frozen=True)

    home: Path = Field(
        default_factory=_default_home,
        description="State directory: logs, per-service state, the running instance's pid.",
    )
    stop_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait after SIGTERM before an engine group gets SIGKILL."
    )
    ready_timeout: float = Field(
        default=600.0,
        gt=0,
        description="Seconds an engine may take to become ready before it counts as failed.",
    )
    drain_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a stopping engine gets to finish its in-flight requests."
    )
    restart_backoff: float = Field(
        default=1.0, gt=0, description="First wait before restarting a dead engine (doubles)."
    )
    restart_backoff_max: float = Field(default=60.0, gt=0, description="Longest wait between restarts.")
    crash_loop_failures: int = Field(
        default=5, ge=1, description="Failures within the crash-loop window after which restarts stop."
    )
    crash_loop_window: float = Field(default=600.0, gt=0, description="Crash-loop window in seconds.")
    log_level: str = Field(default="info", description="Log level of the gateway and the controller.")
    models_dir: Path | None = Field(
        default=None,
        description="Where `pull` puts ModelScope models (HF models go to the HF cache); unset: <home>/models.",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="Key for the gateway's /admin routes (and accepted on every route); unset: admin routes off.",
    )

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.home / "models"

    @property
    def keys_db(self) -> Path:
        return self.state_dir / "keys.db"

    @property
    def usage_db(self) -> Path:
        return self.state_dir / "usage.db"


def load_settings() -> Settings:
    """The settings from the environment; SettingsError names a variable whose value cannot be used."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SERVESTACK_{str(e['loc'][0]).upper()}={e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(problems, fix="correct or unset it (`servestack env` lists the variables)") from None


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, for `servestack env`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        rows.append((f"SERVESTACK_{name.upper()}", str(default), field.description or ""))
    return rows
