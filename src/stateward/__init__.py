"""stateward: a hardened remote-state service for Terraform and OpenTofu."""

__version__ = "0.1.0"
