"""Indexing: chunking, embedding, stores and the sync pipeline."""
