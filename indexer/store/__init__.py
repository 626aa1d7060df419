"""Index stores: the protocol, the embedded SQLite store and (production) OpenSearch."""
