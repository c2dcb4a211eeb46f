"""``stateward s3 audit`` and ``stateward s3 bootstrap``: S3 state backends, read as state
backends.

General scanners check a bucket in general; this package checks it *as a Terraform/OpenTofu
state backend* (the settings that refuse disclosure, corruption and deletion of states, and
the states inside it), from the live AWS APIs (read-only) and from the code that defines and
uses it, and writes the hardened setup for teams that start fresh. Independent of the
stateward server: no data directory, no service.
"""
