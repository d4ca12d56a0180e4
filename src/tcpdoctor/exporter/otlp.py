"""`exporter --otlp URL`: the exporter's metrics pushed over OTLP/HTTP with the OpenTelemetry
SDK, every --interval seconds, next to (or instead of) Prometheus scrapes.

The same series: each Prometheus family becomes an observable instrument of the same name
(gauges stay gauges; a Prometheus counter `X_total` becomes the monotonic sum `X`, which an
OpenTelemetry Collector's Prometheus exporter names `X_total` again), its labels become
attributes, its values are the values of the same reading. Findings are the gauge
`tcpdoctor_finding{netns,id,severity}` = 1, as in Prometheus.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from tcpdoctor import __version__
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg

INSTALL_HINT = Msg("exporter --otlp needs the otel extra: pip install 'tcpdoctor[otel]'")


class Latest:
    """One collection of the registry per export cycle, shared by every instrument's
    callback (the first callback of a cycle reads, the others reuse it)."""

    def __init__(self, registry: Any, interval: float) -> None:
        self.registry = registry
        self.fresh_for = max(interval / 2, 0.5)
        self.lock = threading.Lock()
        self.taken = 0.0
        self.families: dict[str, Any] = {}

    def family(self, name: str) -> Any:
        with self.lock:
            if time.monotonic() - self.taken > self.fresh_for:
                self.families = {f.name: f for f in self.registry.collect()}
                self.taken = time.monotonic()
            return self.families.get(name)


def start(registry: Any, url: str, interval: float) -> Callable[[], None]:
    """Push every `interval` seconds to URL (`/v1/metrics` added when the URL has no path);
    returns the function that flushes and stops it."""
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        raise TcpDoctorError(INSTALL_HINT) from None
    if not url.startswith(("http://", "https://")):
        raise TcpDoctorError(Msg("--otlp: {url!r} is not an http:// or https:// URL", url=url))
    endpoint = url if url.rstrip("/").count("/") > 2 else url.rstrip("/") + "/v1/metrics"
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint),
                                           export_interval_millis=interval * 1000)
    resource = Resource.create({"service.name": "tcpdoctor", "service.version": __version__,
                                "host.name": socket.gethostname()})
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    meter = provider.get_meter("tcpdoctor", __version__)
    latest = Latest(registry, interval)
    for family in registry.collect():  # the families are fixed; their samples are not
        make = (meter.create_observable_counter if family.type == "counter"
                else meter.create_observable_gauge)
        make(family.name, callbacks=[_observe(latest, family.name)],
             description=family.documentation)
    return provider.shutdown


def _observe(latest: Latest, name: str) -> Callable[[Any], Iterable[Any]]:
    from opentelemetry.metrics import Observation

    def callback(options: Any) -> Iterable[Any]:
        family = latest.family(name)
        if family is None:
            return []
        return [Observation(s.value, dict(s.labels)) for s in family.samples
                if s.name in (name, name + "_total")]
    return callback
