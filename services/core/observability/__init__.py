"""Observability: metrics serving for every process kind, and the shared-state exporter.

Metric definitions live in `services.core.metrics`; this package serves them. It imports
nothing here on purpose: `boot` must be importable before prometheus_client is.
"""
