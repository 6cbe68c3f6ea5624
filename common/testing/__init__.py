"""Offline test support: the fixture PKI (shaped like AWS's Nitro chain) and fixture attestation documents.

Everything here is for tests and simulations. The private keys under ``pki/`` are TEST KEYS, published in
this repository: nothing signed by them proves anything about a real enclave.
"""

from nitrokit.testing.documents import build_document
from nitrokit.testing.pki import FixtureKeysMissingError, FixturePki, fixture_pki, fixture_root, fixture_root_pem

__all__ = ["FixtureKeysMissingError", "FixturePki", "build_document", "fixture_pki", "fixture_root",
           "fixture_root_pem"]
