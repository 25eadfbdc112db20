"""The closed set of condition reasons (Ready, Progressing, Degraded).

Dashboards, alerts and Argo CD's health checks key on them, so they are a vocabulary of
their own, shared by the plan (a problem carries its reason) and the API (conditions).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Every reason a condition may carry. A closed set: dashboards and alerts key on it."""

    RECONCILED = "Reconciled"
    PROGRESSING = "Progressing"
    WAITING_FOR_CLOUD = "WaitingForCloud"
    TRANSIENT_ERROR = "TransientError"
    INVALID_SPEC = "InvalidSpec"
    CLOUD_ERROR = "CloudError"
    CREDENTIALS_ERROR = "CredentialsError"
    DEPENDENCY_NOT_READY = "DependencyNotReady"
    DELETING = "Deleting"
    ROLLING_UPDATE = "RollingUpdate"
    SCALING = "Scaling"
    DRIFT_CORRECTED = "DriftCorrected"
    NODE_FAILED = "NodeFailed"
    RECOVERING = "Recovering"
    QUORUM_LOST = "QuorumLost"
    HEALING = "Healing"
    SPLIT_BRAIN = "SplitBrain"
    AS_EXPECTED = "AsExpected"
    SERVER_FAILED = "ServerFailed"  # Degraded: a server keeps failing, kept for inspection
    NO_VALID_HOST = "NoValidHost"  # Degraded: Nova finds no host for a server
    MEMBER_ERROR = "MemberError"  # Degraded: a load balancer member fails its health check
    REPLICAS_UNAVAILABLE = "ReplicasUnavailable"  # Degraded: fewer serving than asked
    WAITING_FOR_HEALTH = "WaitingForHealthChecks"  # not Ready: members not ONLINE yet
    NOT_SERVING = "NotServing"  # not Ready: no member of a listener passes its health check
    RECOVERED = "Recovered"  # Event: what was degraded is not any more
    NEEDS_HUMAN = "NeedsHuman"  # not Ready: the evidence is incomplete; a person must choose
    NOT_WRITABLE = "NotWritable"  # not Ready: a write through the writer endpoint failed
