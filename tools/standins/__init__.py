"""HTTP stand-ins for downstream systems we cannot run here; the real clients talk to them.

Each stand-in serves its data API on `--port` and a control API (faults, reset, stats) on
`--control-port`; `faults` holds the fault injection they share and `server` the process loop.
"""
