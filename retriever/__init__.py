"""Hybrid retrieval filtered by the caller's principals inside every query."""
