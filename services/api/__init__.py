"""The HTTP API: validates, records and enqueues; never runs task bodies."""
