"""The Elasticsearch stand-in's parts: store and versioning, mappings, queries, bulk, HTTP."""
