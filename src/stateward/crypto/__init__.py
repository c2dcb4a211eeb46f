"""The barrier: everything below it is ciphertext (or, until keys land, framed and compressed)."""
