"""The simulated NSM's module id has the shape of every real one (issue 12, item 17).

Real documents say ``i-`` + 17 hex digits (the EC2 instance id) + ``-enc`` + 16 hex digits (the enclave): 39
characters. The shape is read off the real samples here, so the check cannot drift from them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest
from cryptography.x509.oid import NameOID

from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.testing import fixture_pki
from nitrokit.testing.documents import DEFAULT_MODULE_ID, build_document
from tests.conftest import vector_files

REAL_FORMAT = re.compile(r"i-[0-9a-f]{17}-enc[0-9a-f]{16}")


def module_id_of(document: bytes) -> str:
    """The payload's module_id, read with plain cbor2 (independent of nitrokit's parser)."""
    sign1 = cbor2.loads(document)
    sign1 = sign1.value if isinstance(sign1, cbor2.CBORTag) else sign1
    module_id = cbor2.loads(sign1[2])["module_id"]
    assert isinstance(module_id, str)
    return module_id


@pytest.mark.parametrize("path", vector_files("nitro-attestation", "*.cbor"))
def test_every_real_module_id_has_the_format(path: Path) -> None:
    module_id = module_id_of(path.read_bytes())
    assert REAL_FORMAT.fullmatch(module_id) and len(module_id) == 39, module_id


def test_the_default_module_id_has_the_real_format() -> None:
    assert REAL_FORMAT.fullmatch(DEFAULT_MODULE_ID) and len(DEFAULT_MODULE_ID) == 39
    nsm = SimulatedNsm()
    assert nsm.module_id == DEFAULT_MODULE_ID
    assert nsm.describe_nsm().module_id == DEFAULT_MODULE_ID
    assert module_id_of(nsm.attestation()) == DEFAULT_MODULE_ID
    assert module_id_of(build_document(at=datetime(2025, 6, 1, tzinfo=UTC))) == DEFAULT_MODULE_ID
    leaf, _key = fixture_pki().issue_leaf(not_before=datetime(2025, 6, 1, tzinfo=UTC))
    common_name = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(common_name, str) and common_name.startswith(DEFAULT_MODULE_ID + ".")
