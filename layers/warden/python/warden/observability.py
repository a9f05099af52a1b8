"""Logging, metrics and tracing of a Warden function, set up once per execution environment.

Every handler is decorated with `lambda_handler`: the invocation's context in every log line (and
no key of an earlier invocation), its metrics flushed in Embedded Metric Format, and an X-Ray
segment when tracing is on. The X-Ray SDK takes a third of a second to import, so the Tracer is made
only where tracing is on (a deployed function; the local runtime sets POWERTOOLS_TRACE_DISABLED).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer
    from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = ["MetricUnit", "actor", "lambda_handler", "logger", "metrics", "tracer", "tracing_enabled"]

Handler = TypeVar("Handler", bound=Callable[..., Any])

_FALSE = {"0", "false", "f", "no", "n", "off"}


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    """Powertools' rule: on in Lambda unless POWERTOOLS_TRACE_DISABLED says otherwise; off outside
    Lambda and under SAM / Chalice local, where no X-Ray daemon listens."""
    disabled = environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() not in _FALSE
    in_lambda = bool(environ.get("LAMBDA_TASK_ROOT"))
    emulated = bool(environ.get("AWS_SAM_LOCAL") or environ.get("AWS_CHALICE_CLI_MODE"))
    return in_lambda and not emulated and not disabled


def _tracer() -> Tracer | None:
    if not tracing_enabled(os.environ):
        return None
    from aws_lambda_powertools import Tracer

    return Tracer()


logger = Logger()
metrics = Metrics()
tracer = _tracer()


def lambda_handler(*, with_metrics: bool = True) -> Callable[[Handler], Handler]:
    """Decorate a handler: logger context (state cleared per invocation), tracing when on, and the
    metrics flushed at the end (`with_metrics=False` for a function that emits none)."""

    def decorate(handler: Handler) -> Handler:
        wrapped = metrics.log_metrics(handler) if with_metrics else handler
        if tracer is not None:
            wrapped = tracer.capture_lambda_handler(wrapped)
        return logger.inject_lambda_context(wrapped, clear_state=True)  # type: ignore[return-value]

    return decorate


def actor(context: LambdaContext, requested_by: str | None = None) -> str:
    """Who an operation is audited as: this function, and on whose behalf when the request says."""
    return f"function:{context.function_name}" + (f" for {requested_by}" if requested_by else "")
