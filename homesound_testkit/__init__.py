"""Helpers for the tests and the benchmarks, never used by the product.

Synthetic and assembled data with known ground truth, files in the exact formats of outside
releases, and real local servers and clusters (MQTT broker, Ray) started and stopped by the caller.
The `homesound` command and the stage packages never import it. Benchmarks import helpers from here
(never from `tests`); `tests/` keeps its pytest fixtures and the helpers only tests use.
"""
