"""Why the core refused or failed a request, in words a user can act on.

Results and outcomes carry these texts in their ``error`` field; the runtime shows
them as they are.
"""

from __future__ import annotations


class Reason:
    """Texts of rejections and failures: what went wrong and what to do."""

    NO_LEADER = "no leader is known right now; retry after an election"
    NOT_LEADER = "this node is not the leader; send the request to the leader"
    TRANSFERRING = "leadership transfer in progress; retry shortly (at the new leader)"
    TOO_LARGE = "proposal too large ({size} bytes, limit {limit}); send less data"
    TOO_MANY_UNCOMMITTED = "too many uncommitted entries ({count}); retry later"
    NO_OWN_TERM_COMMIT = (
        "the leader has not committed an entry of its term yet; retry the change shortly"
    )
    CHANGE_PENDING = "configuration change at index {index} is not committed yet; retry after it"
    ALREADY_MEMBER = "{node} is already a member ({kind}); nothing to add"
    NOT_A_MEMBER = "{node} is not a member; nothing to remove"
    NOT_A_LEARNER = "{node} is not a learner; only learners can be promoted"
    LAST_VOTER = "{node} is the only voter that can lead; add and promote another member first"
    NOT_A_WITNESS = "{node} is not a witness; nothing to remove as one"
    WITNESS_CANNOT_LEAD = "{node} is a witness; a witness never leads"
    BAD_NODE_ID = "node id must be a non-empty string"
    NOT_A_VOTER = "{node} is not a voter; only voters can become leader"
    ALREADY_LEADER = "{node} is already the leader"
    LEADERSHIP_LOST = "leadership lost before the request completed; retry"
    LEADER_CHANGED = "the leader changed before answering; retry (duplicates are dropped)"
    TIMED_OUT = "no answer from the leader in time; retry (duplicates are dropped)"
    OVERWRITTEN = "the entry was replaced after a leader change; retry (duplicates are dropped)"
    UNKNOWN = "the outcome is covered by a snapshot and unknown; retry (duplicates are dropped)"
    TRANSFER_TIMED_OUT = "the target did not take over within an election timeout"
    TRANSFER_SUPERSEDED = "another transfer was requested"
    TRANSFER_TARGET_REMOVED = "the target left the configuration"
    FORCE_NOBODY = "name the voters to carry on without (non-empty node ids)"
    FORCE_SELF = "a node cannot carry on without itself"
    FORCE_NOT_A_VOTER = "{node} is not a voter that can lead; only such a voter can carry on"
    FORCE_OTHERS_LEFT = "{nodes} would still be voters: only the last voter left can carry on alone"
