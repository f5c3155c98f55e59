"""Span names and attribute keys of the v0.3 wire format (exact strings; other tools read them)."""

from enum import Enum

from pydantic import BaseModel

SPAN_ANNOTATION = "agentlightning.annotation"
SPAN_MESSAGE = "agentlightning.message"
SPAN_OBJECT = "agentlightning.object"
SPAN_EXCEPTION = "agentlightning.exception"
SPAN_OPERATION = "agentlightning.operation"
SPAN_VIRTUAL = "agentlightning.virtual"
OPERATION_REWARD = "agentlightning.reward"

RESOURCE_ROLLOUT_ID = "agentlightning.rollout_id"
RESOURCE_ATTEMPT_ID = "agentlightning.attempt_id"
RESOURCE_SPAN_SEQUENCE_ID = "agentlightning.span_sequence_id"
RESOURCE_TRACER_NAME = "agentlightning.tracer.name"

REWARD_PREFIX = "agentlightning.reward"
TAG_PREFIX = "agentlightning.tag"
LINK_PREFIX = "agentlightning.link"
MESSAGE_BODY = "agentlightning.message.body"
OBJECT_TYPE = "agentlightning.object.type"
OBJECT_LITERAL = "agentlightning.object.literal"
OBJECT_JSON = "agentlightning.object.json"
OPERATION_NAME = "agentlightning.operation.name"
OPERATION_INPUT_PREFIX = "agentlightning.operation.input."
OPERATION_OUTPUT_PREFIX = "agentlightning.operation.output."

EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"
EXCEPTION_ESCAPED = "exception.escaped"

# --- the same strings under Agent-Lightning v0.3's names (`agentlightning.semconv`) -------------------
AGL_ANNOTATION = SPAN_ANNOTATION
AGL_MESSAGE = SPAN_MESSAGE
AGL_OBJECT = SPAN_OBJECT
AGL_EXCEPTION = SPAN_EXCEPTION
AGL_OPERATION = SPAN_OPERATION
AGL_VIRTUAL = SPAN_VIRTUAL
AGL_REWARD = OPERATION_REWARD


class LightningResourceAttributes(Enum):
    """Resource attribute keys of stored spans (v0.3 names)."""

    ROLLOUT_ID = RESOURCE_ROLLOUT_ID
    ATTEMPT_ID = RESOURCE_ATTEMPT_ID
    SPAN_SEQUENCE_ID = RESOURCE_SPAN_SEQUENCE_ID
    TRACER_NAME = RESOURCE_TRACER_NAME


class LightningSpanAttributes(Enum):
    """Span attribute keys (v0.3 names); REWARD, LINK, TAG and the operation input/output are prefixes."""

    REWARD = REWARD_PREFIX
    LINK = LINK_PREFIX
    TAG = TAG_PREFIX
    MESSAGE_BODY = MESSAGE_BODY
    OBJECT_TYPE = OBJECT_TYPE
    OBJECT_LITERAL = OBJECT_LITERAL
    OBJECT_JSON = OBJECT_JSON
    OPERATION_NAME = OPERATION_NAME
    OPERATION_INPUT = OPERATION_INPUT_PREFIX.rstrip(".")
    OPERATION_OUTPUT = OPERATION_OUTPUT_PREFIX.rstrip(".")


class RewardAttributes(Enum):
    """The field names of each `agentlightning.reward.<i>.` entry; entry 0 is the primary reward."""

    REWARD_NAME = "name"
    REWARD_VALUE = "value"


class LinkAttributes(Enum):
    """The field names of each `agentlightning.link.<i>.` entry: spans whose `key_match` equals `value_match`."""

    KEY_MATCH = "key_match"
    VALUE_MATCH = "value_match"


class RewardPydanticModel(BaseModel):
    """One reward dimension."""

    name: str
    value: float


class LinkPydanticModel(BaseModel):
    """One link: the spans whose attribute `key_match` (or `span_id` / `trace_id`) equals `value_match`."""

    key_match: str
    value_match: str


# --- policy versions (issue 17): what the proxy stamps on each LLM call's span ------------------------
# The namespace's policy version when the proxy admitted the call: the weights that answered it, when the
# algorithm swaps weights inside a claims pause (the weight-sync barrier).
POLICY_VERSION = "lq.policy.version"
# The policy version the call's attempt was claimed under (older than POLICY_VERSION when a sync came
# between the claim and the call).
ATTEMPT_POLICY_VERSION = "lq.attempt.policy_version"
# True when the call may have been answered by two weight versions: the namespace's policy version moved
# while it ran (POLICY_VERSION_AT_END holds the later one), or the upstream's weights version did.
POLICY_VERSION_CHANGED = "lq.policy.version_changed"
POLICY_VERSION_AT_END = "lq.policy.version_at_end"
# The upstream's own weights version, when its replies say it (`lq serve-model`: system_fingerprint
# "weights-v<n>"); a stream that reported several keeps them all in UPSTREAM_WEIGHTS_VERSIONS.
UPSTREAM_WEIGHTS_VERSION = "lq.upstream.weights_version"
UPSTREAM_WEIGHTS_VERSIONS = "lq.upstream.weights_versions"
