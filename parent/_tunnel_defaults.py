"""Tunnel mode's defaults, apart from :mod:`nitrokit.parent.tunnel` so that ``nitrokit parent --help`` (and every
``nitrokit --help``, which loads each command group) can show them without loading the tunnel itself: the same
split as :mod:`nitrokit.kms.limits`. :class:`~nitrokit.parent.tunnel.TunnelConfig` takes its defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from nitrokit.wire.credentials import DEFAULT_CREDENTIALS_PORT

#: What the enclave reaches as vsock://3:8000 (the tunnel) and vsock://3:8001 (the credentials channel).
DEFAULT_LISTEN = "vsock://any:8000"
DEFAULT_CREDENTIALS_LISTEN = f"vsock://any:{DEFAULT_CREDENTIALS_PORT}"


@dataclass(frozen=True)
class _Defaults:
    max_connections: int = 128
    max_connections_per_peer: int = 64
    connect_timeout: float = 5.0
    idle_timeout: float = 120.0
    max_tunnel_lifetime: float = 3600.0
    buffer_size: int = 65536
    grace_period: float = 30.0


#: the limits' defaults, named as TunnelConfig's fields
TUNNEL_DEFAULTS = _Defaults()
