"""Loopback fakes of real source APIs (see README.md)."""
