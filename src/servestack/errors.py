"""The one exception tree of servestack.

    ServestackError                      everything we raise on purpose; the CLI prints it as one line
    ├── StackError                       a stack file that cannot be loaded (names file, key path, expected)
    ├── PlanError                        a stack that cannot run on the given GPUs (carries the findings)
    ├── ModelInfoError                   a model's facts cannot be read (config.json, GGUF or safetensors header)
    ├── InventoryError                   a GPU spec that cannot be parsed (`--gpus 4xH9000`)
    ├── EngineError                      an engine that cannot be started or died (carries its log tail)
    ├── RuntimeUnavailable               docker / apptainer / pixi / a venv that is not there
    ├── ClusterError                     a Ray cluster that cannot be reached, or has no room for a replica
    ├── DownloadError                    weights or images that could not be fetched
    ├── SettingsError                    a SERVESTACK_* variable whose value cannot be used
    ├── StateError                       the state dir: nothing running, a stale or foreign instance
    ├── BenchError                       a benchmark that cannot run (bad dataset, unreachable target)
    └── GatewayError                     an HTTP error with its status, OpenAI `type` and `code`
        ├── BadRequest              400
        │   └── ContextLengthExceeded   400  a prompt that cannot fit the model's context
        ├── AuthenticationFailed    401
        ├── PermissionDenied        403
        │   ├── ModelNotAllowed     403  the key may not use this model
        │   └── AdminKeyRequired    403  a client key on an admin route
        ├── NotFound                404
        │   └── ModelNotFound       404
        ├── MethodNotAllowed        405
        ├── Conflict                409  the request conflicts with what runs (a model in use)
        ├── PayloadTooLarge         413
        ├── RateLimited             429  (retry_after)
        ├── HeadersTooLarge         431  the request line and headers are over the cap
        ├── InternalError           500  a bug: logged with its traceback, answered in the API's shape
        ├── NotSupported            501  a route servestack answers only to say it does not do that
        ├── UpstreamError           502
        │   └── ReplicaGone         502  the replica went away mid-call (its node died)
        ├── UpstreamUnavailable     503  (retry_after while it is loading or restarting)
        │   ├── ModelStopped        503  stopped on purpose (`servestack stop`); the fix is `servestack start`
        │   ├── ModelFailed         503  gave up restarting; carries the last error
        │   └── ModelLoadFailed     503  an on-demand model did not load: names it, with the engine's last lines
        ├── OpenFilesExhausted      503  the gateway itself has no file descriptor left; no engine's fault
        └── UpstreamTimeout         504

Raise, never return, errors. Third-party exceptions are converted where they enter.
"""

from __future__ import annotations


class ServestackError(Exception):
    """Base of every error servestack raises on purpose.

    `fix` is a short hint the CLI prints under the message.
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class StackError(ServestackError):
    """A stack file is missing, malformed or does not match the schema."""


class PlanError(ServestackError):
    """A stack does not fit the hardware, or is inconsistent."""


class ModelInfoError(ServestackError):
    """A model's config.json, GGUF header or safetensors header is missing, unreadable or malformed."""


class InventoryError(ServestackError):
    """A GPU inventory spec (`--gpus`) that cannot be parsed, or a GPU model that is not in the table."""


class EngineError(ServestackError):
    """An engine could not start, or died; `log_tail` holds its last log lines."""

    def __init__(self, message: str, *, fix: str | None = None, log_tail: list[str] | None = None) -> None:
        super().__init__(message, fix=fix)
        self.log_tail = log_tail or []


class RuntimeUnavailable(ServestackError):
    """The runtime a service asks for (a binary, venv, container tool) is not available."""


class ClusterError(ServestackError):
    """The stack's Ray cluster cannot be reached or used, or has no room for a replica."""


class DownloadError(ServestackError):
    """Model weights or an image could not be fetched."""


class SettingsError(ServestackError):
    """A `SERVESTACK_*` environment variable holds a value that cannot be used."""


class StateError(ServestackError):
    """The state directory says something that prevents the command (nothing running, already running)."""


class BenchError(ServestackError):
    """A benchmark cannot run: a dataset that cannot be read, a target that does not answer."""


class GatewayError(ServestackError):
    """An error the gateway answers with; rendered as OpenAI-style JSON at the HTTP edge."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.retry_after = retry_after


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ContextLengthExceeded(BadRequest):
    code = "context_length_exceeded"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ModelNotAllowed(PermissionDenied):
    code = "model_not_allowed"


class AdminKeyRequired(PermissionDenied):
    code = "admin_key_required"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    code = "request_header_fields_too_large"


class InternalError(GatewayError):
    status = 500
    type = "server_error"
    code = "internal_error"


class NotSupported(GatewayError):
    status = 501
    type = "invalid_request_error"
    code = "not_supported"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class ReplicaGone(UpstreamError):
    """The replica a request was on went away mid-call (its node died, its engine exited)."""

    code = "replica_gone"


class UpstreamUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "engine_unavailable"


class ModelStopped(UpstreamUnavailable):
    code = "model_stopped"


class ModelFailed(UpstreamUnavailable):
    code = "model_failed"


class ModelLoadFailed(UpstreamUnavailable):
    code = "model_load_failed"


class OpenFilesExhausted(GatewayError):
    """The gateway has no file descriptor left for a connection: its own shortage, never held against an engine."""

    status = 503
    type = "service_unavailable"
    code = "too_many_open_files"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
