"""The enclave service's operation on the wire: ``Attest``, answered with a fresh attestation document.

The service (``nitrokit enclave serve``) speaks the same frames and messages as the parent proxy, with its own
allow-list, :data:`SERVICE_OPERATIONS`::

    with WireClient("vsock://16:5005", operations=SERVICE_OPERATIONS) as client:
        document = parse_attest_response(client.call("Attest", attest_request(nonce)))

Request ``{"Nonce": base64}`` (1..1024 bytes, the NSM's limit); response ``{"AttestationDocument": base64}``.
A caller verifies the document itself (:class:`common.attestation.Verifier` with ``Policy(nonce=nonce)``):
nothing in the answer is trusted until then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.attestation import MAX_DOCUMENT_BYTES
from common.wire.errors import InvalidResponseError
from common.wire.kms import Blob, Operation, Structure

MAX_NONCE_BYTES = 1024

ATTEST = Operation(
    name="Attest",
    request=Structure(members={"Nonce": Blob(1, MAX_NONCE_BYTES)}, required=frozenset({"Nonce"})),
    response=Structure(members={"AttestationDocument": Blob(1, MAX_DOCUMENT_BYTES)},
                       required=frozenset({"AttestationDocument"})),
)

#: The enclave service's allow-list.
SERVICE_OPERATIONS: Mapping[str, Operation] = {ATTEST.name: ATTEST}


def attest_request(nonce: bytes) -> dict[str, Any]:
    """The JSON of an Attest request."""
    return ATTEST.encode_request({"Nonce": nonce})


def parse_attest_response(response: Any) -> bytes:
    """The attestation document in an Attest response (unverified: verify it before trusting it)."""
    document = ATTEST.decode_response(response).get("AttestationDocument")
    if not isinstance(document, bytes):
        raise InvalidResponseError("Attest response: AttestationDocument is missing")
    return document
