"""Connectors pull documents and who may read them from a source."""
