"""The parent-instance side of nitrokit: the proxy that relays enclave requests to AWS KMS."""
