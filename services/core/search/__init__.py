"""Catalog sync to Elasticsearch: kinds, indices, versioned writes, embeddings, the facade."""
