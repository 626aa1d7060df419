"""Answering: retrieve what the caller may read, draft with an LLM provider, validate citations."""
