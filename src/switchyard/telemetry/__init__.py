"""Telemetry: Prometheus metrics (:mod:`.metrics`, served by :mod:`.http`), structured request logs (:mod:`.logs`),
OpenTelemetry traces (:mod:`.tracing`, imported only when ``tracing.enabled``) and the stage that feeds them
(:mod:`.stage`). This package's own module imports nothing, so that a provider may read the upstream trace header
(:mod:`.traceparent`) without loading the request path."""
