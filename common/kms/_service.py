"""The simulated service without the HTTP plumbing: one request in, one (status, JSON) answer out.

Order of checks, as AWS JSON services do it: route (method, path, Content-Type, X-Amz-Target), then the SigV4
signature, then injected faults, then the body (JSON), then the operation. Every answer carries a fresh
request id and produces exactly one log line: request id, operation, outcome, status, milliseconds, and for
refusals a short reason. Never a plaintext, a key or a signature.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from nitrokit import strict_json
from nitrokit.attestation import Verifier
from nitrokit.kms import _generate_random, _operations, _sigv4
from nitrokit.kms._keys import KeyStore
from nitrokit.kms._recipient import Context
from nitrokit.kms._state import StateDir
from nitrokit.kms.conditions import CALLER_ARN, AttestationConditions
from nitrokit.kms.config import Faults, KmsSimConfig
from nitrokit.kms.errors import KmsConfigError, KmsServiceError
from nitrokit.text import escaped

logger = logging.getLogger("nitrokit.kms_sim")

CONTENT_TYPE = "application/x-amz-json-1.1"
_MAX_JSON_BODY_BYTES = 16 * 1024 * 1024  # the most a server may be configured to read (max_body_bytes)
TARGET_PREFIX = "TrentService."
SUPPORTED_OPERATIONS = ("GenerateRandom", *_operations.OPERATIONS)
# The operations that change keys or aliases: after each, the state directory (if any) is rewritten.
_MUTATING = frozenset({"CreateKey", "CreateAlias", "EnableKey", "DisableKey", "ScheduleKeyDeletion",
                       "CancelKeyDeletion", "PutKeyPolicy"})
_INTERNAL_ERROR = "We encountered an internal error. Please try again."
_FAULT_MESSAGES = {
    "KMSInternalException": _INTERNAL_ERROR,
    "DependencyTimeoutException": "The system timed out while trying to fulfill the request. The request can be "
                                  "retried.",
}


@functools.cache
def kms_operation_names() -> frozenset[str]:
    """Every operation in botocore's KMS model (to tell 'not simulated' from 'does not exist')."""
    from botocore.loaders import Loader

    return frozenset(Loader().load_service_model("kms", "service-2")["operations"])


@dataclass(frozen=True)
class Answer:
    """What the HTTP layer sends: status, JSON body bytes and the request id header."""

    status: int
    body: bytes
    request_id: str


class KmsService:
    """The request handler shared by all connections (thread-safe)."""

    def __init__(self, config: KmsSimConfig) -> None:
        self.config = config
        kms_operation_names()  # load botocore's model now, not on the first request
        self._verifier = Verifier(root=config.resolve_root())
        self._key_stores = {store.id: store for store in config.custom_key_stores}
        self._state = StateDir(config.state_dir) if config.state_dir is not None else None
        self._state_lock = threading.Lock()
        self.keys = _load_keys(config, self._state)
        self._lock = threading.Lock()
        self._conditions = config.conditions
        self._recipient_required = config.recipient_required
        self._faults = config.faults
        self._fail_next = config.faults.fail_next
        self._fail_next_error = config.faults.fail_next_error
        # Fault rates only need to be reproducible, not unpredictable.
        self._random = random.Random(config.faults.seed)  # noqa: S311
        self._outcomes: Counter[str] = Counter()

    # Runtime hooks (tests change these while the server runs).

    def set_faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise KmsConfigError("faults must be a Faults value")
        with self._lock:
            self._faults = faults
            self._fail_next = faults.fail_next
            self._fail_next_error = faults.fail_next_error
            self._random = random.Random(faults.seed)  # noqa: S311

    def fail_next(self, count: int, *, error: str = "KMSInternalException") -> None:
        Faults(fail_next=count, fail_next_error=error)  # validates both
        with self._lock:
            self._fail_next = count
            self._fail_next_error = error

    def set_conditions(self, conditions: AttestationConditions | None, *,
                       recipient_required: bool | None = None) -> None:
        if conditions is not None and not isinstance(conditions, AttestationConditions):
            raise KmsConfigError("conditions must be AttestationConditions or None")
        with self._lock:
            self._conditions = conditions
            if recipient_required is not None:
                self._recipient_required = bool(recipient_required)

    def outcomes(self) -> dict[str, int]:
        with self._lock:
            return dict(self._outcomes)

    # Request handling.

    def handle(self, *, method: str, path: str, headers: Message, body: bytes) -> Answer:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        operation = "-"
        try:
            operation = self._route(method, path, headers)
            _sigv4.verify_request(method=method, path=path, headers=headers, body=body,
                                  credentials=self.config.credentials, region=self.config.region,
                                  any_credentials=self.config.any_credentials)
            self._inject_faults()
            if operation not in SUPPORTED_OPERATIONS:
                raise KmsServiceError("UnsupportedOperationException",
                                      f"{operation} is not implemented by nitrokit's simulated KMS (it implements "
                                      f"{', '.join(SUPPORTED_OPERATIONS)})")
            params = _parse_json(body)
            context = self._context()
            result: Mapping[str, Any]
            if operation == "GenerateRandom":  # looked up now: tests replace it to simulate a bug
                result = _generate_random.generate_random(params, context)
            else:
                result = _operations.OPERATIONS[operation](params, context)
                if self._state is not None and operation in _MUTATING:
                    with self._state_lock:  # one writer at a time, each with the latest snapshot
                        self._state.save(self.keys.snapshot())
        except KmsServiceError as exc:
            return self._finish(request_id, operation, started, status=exc.status,
                                payload={"__type": exc.code, "message": exc.message}, outcome=exc.code,
                                reason=exc.reason)
        except Exception:  # a bug must still give a well-formed 500, and a log line, not a dropped connection
            logger.exception("request_id=%s operation=%s unexpected error", request_id, operation)
            return self._finish(request_id, operation, started, status=500,
                                payload={"__type": "KMSInternalException", "message": _INTERNAL_ERROR},
                                outcome="KMSInternalException", reason="unexpected error in the simulator")
        return self._finish(request_id, operation, started, status=200, payload=result, outcome="ok")

    def refuse(self, error: KmsServiceError) -> Answer:
        """An error answer decided by the HTTP layer (body too large, no Content-Length, ...)."""
        return self._finish(str(uuid.uuid4()), "-", time.perf_counter(), status=error.status,
                            payload={"__type": error.code, "message": error.message}, outcome=error.code,
                            reason=error.reason)

    def _finish(self, request_id: str, operation: str, started: float, *, status: int, payload: Mapping[str, Any],
                outcome: str, reason: str | None = None) -> Answer:
        elapsed = (time.perf_counter() - started) * 1000
        with self._lock:
            self._outcomes[outcome] += 1
        logger.info("request_id=%s operation=%s outcome=%s status=%d ms=%.2f%s", request_id, operation, outcome,
                    status, elapsed, f" reason={reason!r}" if reason else "")
        return Answer(status=status, body=json.dumps(payload, separators=(",", ":")).encode(), request_id=request_id)

    def _route(self, method: str, path: str, headers: Message) -> str:
        if method != "POST" or path != "/":
            raise KmsServiceError("UnknownOperationException",
                                  f"No operation at {escaped(method, 16)} {escaped(path, 64)}", reason="not POST /")
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != CONTENT_TYPE:
            raise KmsServiceError("UnknownOperationException",
                                  f"Unsupported Content-Type '{escaped(content_type, 64)}': expected {CONTENT_TYPE}",
                                  reason="content type")
        target = headers.get("X-Amz-Target") or ""
        operation = target.removeprefix(TARGET_PREFIX)
        if not target.startswith(TARGET_PREFIX) or operation not in kms_operation_names():
            raise KmsServiceError("UnknownOperationException", "", reason=f"target '{escaped(target, 64)}'")
        return operation

    def _inject_faults(self) -> None:
        with self._lock:
            faults = self._faults
            error = None
            if self._fail_next > 0:
                self._fail_next -= 1
                error = self._fail_next_error
            else:
                draw = self._random.random()
                if draw < faults.internal_error_rate:
                    error = "KMSInternalException"
                elif draw < faults.internal_error_rate + faults.dependency_timeout_rate:
                    error = "DependencyTimeoutException"
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if error is not None:
            raise KmsServiceError(error, _FAULT_MESSAGES[error], status=500, reason="injected fault")

    def _context(self) -> Context:
        with self._lock:
            conditions, required = self._conditions, self._recipient_required
        return Context(verifier=self._verifier, conditions=conditions, recipient_required=required,
                       key_stores=self._key_stores, caller=CALLER_ARN, keys=self.keys)


def _load_keys(config: KmsSimConfig, state: StateDir | None) -> KeyStore:
    """The key store: the state directory's keys, if any, then the configured keys (ids, material, aliases,
    policy, state) it does not hold yet."""
    store = KeyStore(region=config.region)
    saved = state.load() if state is not None else None
    if saved is not None:
        store.restore(saved)
    for key in config.keys:
        if store.has(key.key_id):
            continue
        policy = None
        if isinstance(key.policy, str):
            policy = (key.policy, AttestationConditions.from_json_text(key.policy, what=f"keys: {key.key_id}: policy"))
        store.create(key_spec=key.key_spec, key_usage=key.key_usage, description=key.description, key_id=key.key_id,
                     material=key.material if isinstance(key.material, bytes) else None, policy=policy)
        for alias in key.aliases:
            try:
                store.create_alias(alias, key.key_id)
            except KmsServiceError:
                raise KmsConfigError(f"keys: {key.key_id}: alias {alias} already names another key in the state "
                                     "directory") from None
        if not key.enabled:
            store.change_state(key.key_id, "disable")
    return store


def _parse_json(body: bytes) -> Mapping[str, Any]:
    if not body.strip():
        return {}
    try:
        params = strict_json.loads(body, what="the request body", max_bytes=_MAX_JSON_BODY_BYTES)
    except strict_json.StrictJsonError:
        raise KmsServiceError("SerializationException", "The request body is not valid JSON") from None
    if not isinstance(params, dict):
        raise KmsServiceError("SerializationException", "The request body must be a JSON object")
    return params
