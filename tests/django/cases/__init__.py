"""Scenarios that run inside the example project (a subprocess), started by tests/django."""
