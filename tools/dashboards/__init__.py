"""Grafana dashboards of durable-writes, as code (grafana-foundation-sdk).

    python -m tools.dashboards          (make dashboards)

writes charts/durable-writes/files/dashboards/*.json, the files the chart ships; a test
regenerates them and fails on any difference.
"""
