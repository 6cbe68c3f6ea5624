"""The enclave side of nitrokit: NSM access, ephemeral keys and the KMS client that runs inside an enclave."""
