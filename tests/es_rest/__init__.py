"""Elasticsearch's own YAML REST tests, run by our runner against the stand-in or a cluster."""
