"""Shared core of nitrokit: attestation documents, CMS envelopes, the wire protocol and the simulated KMS.

Both the enclave side (``enclave``) and the parent side (``parent``) import from here, never from each other.
"""
