"""The replicated state machine: chat messages, nicks, client sessions, membership notices.

Every node applies the same committed log entries in the same order to a
:class:`ChatState`, so every node must reach the same state: applying is
deterministic (no clock, no randomness, no dict-order surprises) and two states
fed the same entries produce byte-identical snapshots.

Commands
    The ``data`` of a NORMAL log entry is one command (:mod:`raftchat.chat.commands`)
    with the serial it follows in its client's run (``prev_serial``). The entry also
    carries the client session (``client_id``, ``serial``); the client id is the node id
    of the sender.

Malformed commands
    A command that does not decode or breaks :class:`ChatLimits` is applied as a
    no-op: it yields :class:`InvalidCommand`, is counted and logged, and still
    uses up its serial, so every node does exactly the same thing, and the sender's
    next proposal (which names that serial as its predecessor) applies. Among them:
    a message time outside :data:`~raftchat.limits.MIN_MESSAGE_MS`..
    :data:`~raftchat.limits.MAX_MESSAGE_MS` (a sender clamps its own clock into it,
    :func:`clamp_message_ms`) and a nick with an invisible character.

Client sessions: exactly once, in the order sent
    The state machine is the one place that knows client sessions; the consensus
    core appends what a leader is given, retries and copies included. A client
    numbers its proposals with increasing serials (1, 2, 3, ...), retries a proposal
    with the *same* serial, and names in each the previous serial of its run
    (``prev_serial``; 0 for the first of a run, and once the previous one is known
    applied). Serial ``s`` of client ``c`` is applied only if

    - ``s`` is above the last applied serial of ``c``; otherwise it is a duplicate,
      dropped with :class:`DuplicateDropped` pointing at the index where the original
      was applied (0 when that is no longer known);
    - and ``prev_serial`` is 0 or that last applied serial; otherwise an earlier
      proposal of the run is missing (lost on the way, or behind in the log), and it is
      dropped with :class:`OutOfOrderDropped` naming the last applied serial: the client
      sends every proposal after it again, in order.

    So one sender's messages are shown in the order sent, each once, whatever the
    leaders appended. A client restarted with a new run starts it with ``prev_serial``
    0 above every serial it may have proposed before (not only above
    :meth:`ChatState.last_serial`, since proposals still in flight may commit later);
    one that starts below (its clock stepped back) sees its first proposals dropped as
    duplicates and proposes them again above the last applied serial.

    Sessions are bounded (:attr:`ChatLimits.max_sessions`): beyond the cap the
    least recently active client is forgotten. A forgotten client retrying an
    old serial is still dropped while the message is in the history window (a
    message id is applied once), and would be applied twice beyond it; with
    the cap far above the number of members (at most a few dozen are active at
    once) a client is only
    forgotten after thousands of other clients were active since its last
    proposal, long after any retry of it. Keeping every client ever seen is
    not bounded: each new install of the app is a new node id.

Display
    :mod:`raftchat.chat.textsafety` makes text typed by a peer safe to show;
    :mod:`raftchat.chat.confusables` says which nicks look alike, so that
    :meth:`ChatState.display_name` tells their holders apart.
"""

from raftchat.chat.commands import (
    COMMAND_VERSION,
    ChatMessage,
    Command,
    InvalidCommandError,
    Leave,
    MergedMessage,
    MergeDone,
    NickChange,
    decode_command,
    encode_command,
    sign_command,
    signed_content,
)
from raftchat.chat.events import (
    ChatEvent,
    DuplicateDropped,
    InvalidCommand,
    LeaveRequested,
    MemberJoined,
    MemberLeft,
    MemberRoleChanged,
    MergeCompleted,
    MergedDuplicate,
    MessageApplied,
    NickChanged,
    OutOfOrderDropped,
)
from raftchat.chat.rules import DEFAULT_LIMITS, ChatLimits, nick_problem, text_problem
from raftchat.chat.signing import Signature, Signer, sign, signature_problem
from raftchat.chat.snapshot import SNAPSHOT_VERSION, ChatSnapshotError
from raftchat.chat.state import DEFAULT_HISTORY_LIMIT, ChatState
from raftchat.limits import clamp_message_ms

__all__ = [
    "COMMAND_VERSION",
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_LIMITS",
    "SNAPSHOT_VERSION",
    "ChatEvent",
    "ChatLimits",
    "ChatMessage",
    "ChatSnapshotError",
    "ChatState",
    "Command",
    "DuplicateDropped",
    "InvalidCommand",
    "InvalidCommandError",
    "Leave",
    "LeaveRequested",
    "MemberJoined",
    "MemberLeft",
    "MemberRoleChanged",
    "MergeCompleted",
    "MergeDone",
    "MergedDuplicate",
    "MergedMessage",
    "MessageApplied",
    "NickChange",
    "NickChanged",
    "OutOfOrderDropped",
    "Signature",
    "Signer",
    "clamp_message_ms",
    "decode_command",
    "encode_command",
    "nick_problem",
    "sign",
    "sign_command",
    "signature_problem",
    "signed_content",
    "text_problem",
]
