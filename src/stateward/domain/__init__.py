"""The domain: pure code with no I/O (state files, lock info, paths and globs, policy and
actions, principals, errors, audit records and their hash chain, secret detection, the S3
key layout). Every other layer may import it; it imports only ``stateward.common``."""
