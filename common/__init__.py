"""nitrokit: AWS Nitro Enclaves attestation toolkit.

This package is the shared core: attestation documents (:mod:`nitrokit.attestation`), CMS envelopes
(:mod:`nitrokit.cms`), the enclave-parent wire protocol (:mod:`nitrokit.wire`), EIF measurements
(:mod:`nitrokit.eif`), the simulated KMS (:mod:`nitrokit.kms`) and the command line (:mod:`nitrokit.cli`).
The two sides, :mod:`nitrokit.enclave` and :mod:`nitrokit.parent`, import from here; the core imports neither
of them, and neither side imports the other (docs/architecture.md).

Importing this package is cheap: each subpackage loads what it needs when it is imported.
"""

__version__ = "0.1.0"
