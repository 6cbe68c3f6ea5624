"""The parent-instance side of nitrokit: the proxy that relays enclave requests to AWS KMS.

:mod:`nitrokit.parent.proxy` (``ParentProxy``, ``ProxyConfig``, ``ProxyThread``) is the asyncio server;
:mod:`nitrokit.parent.cli` is ``nitrokit parent``. It speaks the protocol of :mod:`nitrokit.wire`
(docs/protocol.md); see docs/parent.md for running it on the instance. It imports from the core (``nitrokit``)
only, never from :mod:`nitrokit.enclave`. It needs the ``parent`` extra (boto3).
"""
