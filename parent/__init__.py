"""The parent-instance side of nitrokit: the proxy that relays enclave requests to AWS KMS.

:mod:`parent.proxy` (``ParentProxy``, ``ProxyConfig``, ``ProxyThread``) is the asyncio server; :mod:`parent.cli`
is ``nitrokit parent``. It speaks the protocol of :mod:`common.wire` (docs/protocol.md); see docs/parent.md for
running it on the instance. It imports from ``common`` only, never from ``enclave``.
"""
