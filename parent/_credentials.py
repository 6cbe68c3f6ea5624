"""The tunnel's credentials channel: a wire server answering ``GetCredentials`` with the parent's credentials.

In tunnel mode the enclave signs its KMS requests itself, with credentials the parent hands over here
(:mod:`nitrokit.wire.credentials`). The default source is boto3's standard credential chain (the instance
role through IMDSv2 on EC2): ``Session(profile_name=...).get_credentials()`` once, then
``get_frozen_credentials()`` per request, which refreshes the role's temporary credentials before they
expire (botocore does that itself); the expiration sent is the refreshable credentials' own, so the enclave
knows when to ask again.

A source runs in one daemon thread at a time, off the event loop, within ``timeout``: a source that fails
or hangs (the metadata service unreachable) costs that request a ``NoCredentials`` answer (retryable), never
the server, and never more than one stuck thread. A source that finds no credentials at all (boto3's chain
found nothing: :class:`NoCredentialsConfigured`) is answered ``NoCredentials``, not retryable, saying none
are configured on the parent; :meth:`CredentialsServer.check` (run once at start) logs one warning naming
where they can come from. Nothing of the secret key or the session token is logged
or put in an error message: failures are named by their exception's class alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from nitrokit._extras import extra_required
from nitrokit.errors import UsageError
from nitrokit.wire import Address, ErrorCode, InvalidResponseError, Request
from nitrokit.wire.credentials import CREDENTIALS_OPERATIONS, AwsCredentials, credentials_response
from nitrokit.wire.server import CallFailed, ServerLimits, WireServer

__all__ = ["CredentialsServer", "CredentialsSource", "NoCredentialsConfigured", "boto3_credentials_source"]

#: Returns the credentials to hand out now (called in a worker thread; may block, e.g. on IMDS).
CredentialsSource = Callable[[], AwsCredentials]

logger = logging.getLogger("nitrokit.parent")

#: Where the parent's credentials can come from, for the messages saying there are none.
_WHERE = ("the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), a profile (--profile, or "
          "AWS_PROFILE), or the instance role (attach one to the parent instance)")


class NoCredentialsConfigured(LookupError):
    """Raised by a source that finds no credentials at all (not a transient failure: nothing is configured)."""


def boto3_credentials_source(profile: str | None = None) -> CredentialsSource:
    """boto3's standard chain for ``profile`` (the session is made now: an unknown profile fails at once)."""
    with extra_required("parent"):
        import boto3
        from botocore.exceptions import BotoCoreError

    try:
        session = boto3.Session(profile_name=profile)
    except BotoCoreError as exc:
        raise UsageError(f"AWS profile: {type(exc).__name__}: {exc}") from None
    lock = threading.Lock()
    found: list[Any] = []

    def source() -> AwsCredentials:
        with lock:
            if not found:
                credentials = session.get_credentials()
                if credentials is None:
                    raise NoCredentialsConfigured("no credentials in the standard chain")
                found.append(credentials)
        credentials = found[0]
        frozen = credentials.get_frozen_credentials()
        expiry = getattr(credentials, "_expiry_time", None)  # RefreshableCredentials; static ones have none
        expiration = expiry.timestamp() if isinstance(expiry, datetime.datetime) else None
        return AwsCredentials(access_key_id=frozen.access_key, secret_access_key=frozen.secret_key,
                              session_token=frozen.token or None, expiration=expiration)

    return source


class CredentialsServer:
    """A :class:`~nitrokit.wire.server.WireServer` (logger ``nitrokit.credentials``) answering GetCredentials
    from ``source``, each call within ``timeout`` seconds."""

    def __init__(self, limits: ServerLimits, source: CredentialsSource, *, timeout: float,
                 listen: str | Address) -> None:
        self.source = source
        self.timeout = timeout
        self._running: asyncio.Future[Any] | None = None
        self.server = WireServer(limits, self._answer, operations=CREDENTIALS_OPERATIONS, name="credentials",
                                 listen=listen)

    async def _answer(self, request: Request) -> Mapping[str, Any]:
        if request.request:
            raise CallFailed(ErrorCode.INVALID_REQUEST, "GetCredentials takes no members")
        try:
            async with asyncio.timeout(self.timeout):
                credentials = await self._call_source()
            return credentials_response(credentials)
        except TimeoutError:
            logger.warning("credentials: the source gave no answer within %g s", self.timeout)
            raise CallFailed(ErrorCode.NO_CREDENTIALS, f"the parent's credential source gave no answer within "
                             f"{self.timeout:g} s; try again later", retryable=True) from None
        except NoCredentialsConfigured:
            logger.info("credentials: none configured on the parent (GetCredentials answered NoCredentials)")
            raise CallFailed(ErrorCode.NO_CREDENTIALS, "no AWS credentials are configured on the parent: it needs "
                             f"them from {_WHERE}") from None
        except InvalidResponseError as exc:  # names the member, never its value
            logger.warning("credentials: the source's credentials are unusable: %s", exc)
            raise CallFailed(ErrorCode.NO_CREDENTIALS, "the parent's credentials are unusable (see its log)",
                             retryable=True) from None
        except Exception as exc:  # a source's failure, named by its class alone: messages may quote secrets
            logger.warning("credentials: the source failed: %s", type(exc).__name__)
            raise CallFailed(ErrorCode.NO_CREDENTIALS, f"the parent has no AWS credentials ({type(exc).__name__}); "
                             "try again later", retryable=True) from None

    async def check(self) -> None:
        """Ask the source once (at start, in the background): one warning if it finds no credentials at all, or
        fails (named by its exception's class alone); quiet if it answers or is slow."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._call_source()
        except NoCredentialsConfigured:
            logger.warning("credentials: no AWS credentials are configured on the parent; GetCredentials will "
                           "answer NoCredentials until there are some, from %s", _WHERE)
        except TimeoutError:
            pass
        except Exception as exc:  # named by its class alone: messages may quote secrets
            logger.warning("credentials: the source failed at start: %s (each request will try again)",
                           type(exc).__name__)

    async def _call_source(self) -> Any:
        """Run the source in a daemon thread. Requests made while it runs (even one abandoned after its timeout)
        share its answer, so a hanging source holds one thread, not one per request."""
        loop = asyncio.get_running_loop()
        if self._running is None or self._running.done():
            answer: asyncio.Future[Any] = loop.create_future()
            answer.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved: never "lost"

            def deliver(result: Any, error: BaseException | None) -> None:
                if answer.done():
                    return
                if error is not None:
                    answer.set_exception(error)
                else:
                    answer.set_result(result)

            def work() -> None:
                result: Any = None
                error: BaseException | None = None
                try:
                    result = self.source()
                except Exception as exc:  # delivered to the awaiting call
                    error = exc
                with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
                    loop.call_soon_threadsafe(deliver, result, error)

            threading.Thread(target=work, name="nitrokit-credentials", daemon=True).start()
            self._running = answer
        return await asyncio.shield(self._running)
