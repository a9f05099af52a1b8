"""Publishing metric points in Embedded Metric Format, each with its own dimensions (Powertools'
`single_metric`: one EMF line per point; the `service` dimension is added by Powertools)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class MetricPoint(Protocol):
    name: str
    unit: str
    value: float
    dimensions: dict[str, str]


def publish(points: Iterable[MetricPoint], namespace: str | None) -> int:
    """Emit every point, none when Powertools' metrics are disabled (POWERTOOLS_METRICS_DISABLED, as
    its `Metrics` honours it); returns how many."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if is_metrics_disabled():  # single_metric prints its line even then
        return 0
    count = 0
    for point in points:
        with single_metric(name=point.name, unit=MetricUnit(point.unit), value=point.value,
                           namespace=namespace) as metric:
            for name, value in point.dimensions.items():
                metric.add_dimension(name=name, value=value)
        count += 1
    return count
