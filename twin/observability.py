"""Controller-side observability, in any mode: Prometheus metrics and optional OpenTelemetry spans.

Metrics (``prometheus-client``, one registry per controller, served on 127.0.0.1 when a port is
given: ``MESHTWIN_METRICS_PORT`` in every mode, or ``controller.metrics_port`` in a live inventory;
sim and emu feed them through :class:`ControllerWatch`, live records each iteration directly):
``meshtwin_loop_phase_seconds{phase}`` (histogram of observe/monitor/analyze/plan/sign/execute
per iteration), ``meshtwin_incidents_total{diagnosis}``, ``meshtwin_actions_total{kind,verdict}``,
``meshtwin_nodes_reporting``.

Spans (``opentelemetry-sdk``) are off by default. They are on when the standard variable
``OTEL_TRACES_EXPORTER`` names an exporter (``console``, or ``otlp`` when
``opentelemetry-exporter-otlp`` is installed), and ``OTEL_SDK_DISABLED=true`` turns them off
again. One span per loop iteration with one child per phase, timed from the loop's own
``perf_counter`` measurements, so tracing adds no clock reads inside the loop.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PHASES = ("observe", "monitor", "analyze", "plan", "sign", "execute")
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _tracer():
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter in ("", "none") or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter == "console":
        exp = ConsoleSpanExporter()
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as err:
            raise RuntimeError("OTEL_TRACES_EXPORTER=otlp needs the opentelemetry-exporter-otlp package") from err
        exp = OTLPSpanExporter()
    else:
        raise RuntimeError(f"OTEL_TRACES_EXPORTER={exporter!r} is not supported here (console, otlp or none)")
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                       "meshtwin-controller")}))
    provider.add_span_processor(BatchSpanProcessor(exp))
    return provider


class ControllerMetrics:
    """Record each loop iteration; ``port`` serves /metrics (0 picks a free port, None serves nothing)."""

    def __init__(self, mode: str, port: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self.phase = Histogram("meshtwin_loop_phase_seconds", "loop phase duration per iteration", ["phase"],
                               registry=self.registry, buckets=_BUCKETS)
        self.incidents = Counter("meshtwin_incidents_total", "incidents opened, by diagnosis", ["diagnosis"],
                                 registry=self.registry)
        self.actions = Counter("meshtwin_actions_total", "actions sent, by kind and verdict", ["kind", "verdict"],
                               registry=self.registry)
        self.reporting = Gauge("meshtwin_nodes_reporting", "nodes that answered the last poll",
                               registry=self.registry)
        self.mode = mode
        self.server = None
        self.port = None
        if port is not None:
            self.server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
            self.port = self.server.server_port
        self._provider = _tracer()
        self._tracer = self._provider.get_tracer("meshtwin.mapek") if self._provider else None

    def record(self, it, results=(), reporting: int | None = None) -> None:
        """``it`` is a :class:`twin.mapek.loop.Iteration` after execute; ``results`` its ActionResults."""
        for ph in PHASES:
            if ph in it.costs:
                self.phase.labels(ph).observe(it.costs[ph])
        for d in it.new:
            self.incidents.labels(d.kind).inc()
        for r in results:
            verdict = "applied" if r.applied else (r.rejected_reason.split(":", 1)[0] or "rejected")[:40]
            self.actions.labels(r.action.kind, verdict).inc()
        if reporting is not None:
            self.reporting.set(reporting)
        if self._tracer is not None:
            self._spans(it)

    def _spans(self, it) -> None:
        end = time.time_ns()
        total = sum(it.costs.get(p, 0.0) for p in PHASES)
        t = end - int(total * 1e9)
        root = self._tracer.start_span("mapek.iteration", start_time=t,
                                       attributes={"meshtwin.mode": self.mode, "meshtwin.t": it.t,
                                                   "meshtwin.actions": len(it.actions),
                                                   "meshtwin.new_incidents": len(it.new)})
        from opentelemetry import trace

        ctx = trace.set_span_in_context(root)
        for ph in PHASES:
            if ph in it.costs:
                d = int(it.costs[ph] * 1e9)
                self._tracer.start_span(f"mapek.{ph}", context=ctx, start_time=t).end(end_time=t + d)
                t += d
        root.end(end_time=end)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        if self._provider is not None:
            self._provider.shutdown()


class ControllerWatch:
    """Feed :class:`ControllerMetrics` from any mode's controller without touching its loop.

    A daemon thread reads what the controller already records (``iterations`` with per-phase
    milliseconds, the knowledge base's incidents, the executor's results) every ``period_s`` and
    turns the new entries into metrics and spans. ``get`` returns the controller or None while
    it does not exist yet (sim builds it inside its first SimPy tick). ``close`` drains the rest.
    """

    def __init__(self, get, metrics: ControllerMetrics, period_s: float = 0.5) -> None:
        import threading

        self.get, self.metrics, self.period_s = get, metrics, period_s
        self._seen = {"it": 0, "inc": 0, "res": 0}
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="controller-metrics")
        self._thread.start()

    def _drain(self) -> None:
        ctl = self.get()
        if ctl is None:
            return
        m, seen = self.metrics, self._seen
        its = ctl.iterations[seen["it"]:]
        seen["it"] += len(its)
        for row in its:
            for ph in PHASES:
                if ph in row:
                    m.phase.labels(ph).observe(row[ph] / 1000)
        incs = ctl.knowledge.incidents[seen["inc"]:]
        seen["inc"] += len(incs)
        for inc in incs:
            m.incidents.labels(inc.diagnosis).inc()
        res = ctl.executor.results[seen["res"]:]
        seen["res"] += len(res)
        for r in res:
            verdict = "applied" if r.applied else (r.rejected_reason.split(":", 1)[0] or "rejected")[:40]
            m.actions.labels(r.action.kind, verdict).inc()
        f = getattr(ctl, "last_features", None)
        rep = getattr(f, "reporting", None)
        if rep is not None:
            m.reporting.set(int(sum(bool(x) for x in rep)))

    def _run(self) -> None:
        while not self._halt.wait(self.period_s):
            try:
                self._drain()
            except (AttributeError, IndexError, TypeError, ValueError):  # a controller mid-update: next round
                continue

    def close(self) -> None:
        self._halt.set()
        self._thread.join(2)
        self._drain()
        self.metrics.close()


def metrics_port() -> int | None:
    """``MESHTWIN_METRICS_PORT`` (any mode; live also reads ``controller.metrics_port``)."""
    import os

    v = os.environ.get("MESHTWIN_METRICS_PORT", "").strip()
    return int(v) if v else None
