"""Key providers (key encryption keys): local key file, passphrase, AWS KMS, Vault/OpenBao
transit, GCP KMS. The interface is in ``base``."""
