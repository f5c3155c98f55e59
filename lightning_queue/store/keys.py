"""Key names of a namespace, and the id rules that keep user ids from breaking them."""

from __future__ import annotations

import hashlib
import re
import uuid

from . import schema

# Always fullmatch: `$` also matches before a final newline, so match() would let 'w-1\n' through.
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# No ':' (it separates key parts), no braces (hash tags), no spaces or slashes (URL paths).
_ID = re.compile(r"[A-Za-z0-9_.@=+\-]{1,128}")


def generate_id(length: int) -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()[:length]


def new_rollout_id() -> str:
    return "ro-" + generate_id(12)


def new_attempt_id() -> str:
    return "at-" + generate_id(8)


def new_resources_id() -> str:
    return "rs-" + generate_id(12)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(kind: str, value: object) -> str:
    """Return `value` if it may be used as an id, else raise a ValueError that shows it."""
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a string, got {type(value).__name__}: {value!r:.100}")
    if not _ID.fullmatch(value):
        raise ValueError(
            f"invalid {kind} {value[:100]!r}{'...' if len(value) > 100 else ''}: "
            "use 1-128 characters from A-Z a-z 0-9 _ . @ = + -"
        )
    return value


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"invalid namespace {namespace!r}: use 1-64 characters from A-Z a-z 0-9 _ . -")
    return namespace


class Keys:
    """Every key of one namespace shares the hash tag `{<ns>}`, so scripts stay on one cluster slot."""

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self.prefix = schema.prefix(namespace)
        self.queue = self.prefix + schema.KEY_QUEUE
        self.done = self.prefix + schema.KEY_DONE
        self.meta = self.prefix + schema.KEY_META
        self.all_rollouts = self.prefix + schema.KEY_ALL_ROLLOUTS
        self.resources_index = self.prefix + schema.KEY_RESOURCES_INDEX
        self.resources_created = self.prefix + schema.KEY_RESOURCES_CREATED
        self.workers_index = self.prefix + schema.KEY_WORKERS_INDEX
        self.open_rollouts = self.prefix + schema.KEY_OPEN_INDEX
        self.ended_rollouts = self.prefix + schema.KEY_ENDED_INDEX
        self.retention = self.prefix + schema.KEY_RETENTION
        self.policy_version = self.prefix + schema.KEY_POLICY_VERSION
        self.pause = self.prefix + schema.KEY_PAUSE
        self.pause_holder = self.prefix + schema.KEY_PAUSE_HOLDER
        self.gate = self.prefix + schema.KEY_GATE
        self.staleness = self.prefix + schema.KEY_STALENESS

    def rollout(self, rollout_id: str) -> str:
        return f"{self.prefix}{schema.KEY_ROLLOUT}{rollout_id}"

    def attempt(self, rollout_id: str, attempt_id: str) -> str:
        return f"{self.prefix}{schema.KEY_ATTEMPT}{rollout_id}:{attempt_id}"

    def attempts(self, rollout_id: str) -> str:
        return f"{self.prefix}{schema.KEY_ATTEMPTS}{rollout_id}"

    def spans(self, rollout_id: str) -> str:
        return f"{self.prefix}{schema.KEY_SPANS}{rollout_id}"

    def sequence(self, rollout_id: str) -> str:
        return f"{self.prefix}{schema.KEY_SEQUENCE}{rollout_id}"

    def status_index(self, status: str) -> str:
        return f"{self.prefix}{schema.KEY_STATUS_INDEX}{status}"

    def end_index(self, status: str) -> str:
        return f"{self.prefix}{schema.KEY_END_INDEX}{status}"

    def mode_index(self, mode: str | None) -> str:
        return f"{self.prefix}{schema.KEY_MODE_INDEX}{schema.NO_MODE if mode is None else mode}"

    def span_order(self, rollout_id: str, attempt_id: str) -> str:
        """One attempt's span ids by sequence id."""
        return f"{self.prefix}{schema.KEY_SPAN_ORDER}{rollout_id}:{attempt_id}"

    def resources(self, resources_id: str) -> str:
        return f"{self.prefix}{schema.KEY_RESOURCES}{resources_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}{schema.KEY_WORKER}{worker_id}"
