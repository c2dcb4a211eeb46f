"""Storage: metadata (SQLAlchemy Core) and blobs (files). Everything here is ciphertext-agnostic."""
