"""Helpers that start the real parts the tests use (tests/README.md): PostgreSQL clusters and
the two-store fixture (``pg``), moto servers (``aws``), fake Vault/Cloud KMS servers
(``fake_kms``), server processes and Terraform binaries (``support``)."""
