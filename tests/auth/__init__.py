"""Tests of pgmux.auth (a package so that its modules can share test vectors)."""
