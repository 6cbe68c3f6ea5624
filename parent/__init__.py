"""The parent-instance side of nitrokit: relay mode's proxy, which calls AWS KMS for enclaves, and tunnel mode's
byte relay, through which enclaves run TLS to KMS themselves.

:mod:`nitrokit.parent.proxy` (``ParentProxy``, ``ProxyConfig``, ``ProxyThread``) is relay mode's asyncio server;
:mod:`nitrokit.parent.tunnel` (``TunnelConfig``, ``TunnelProxy``, ``TunnelThread``) is tunnel mode: a bounded
byte relay to one allow-listed host, re-resolved on its DNS TTL, and the credentials channel beside it;
:mod:`nitrokit.parent.cli` is ``nitrokit parent [--mode relay|tunnel]``. It speaks the protocol of :mod:`nitrokit.wire`
(docs/protocol.md); see docs/parent.md for running it on the instance. It imports from the core (``nitrokit``)
only, never from :mod:`nitrokit.enclave`. It needs the ``parent`` extra (boto3).
"""
