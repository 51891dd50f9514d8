"""What a transcript means for turn-taking, pure: does it read as finished? Was speech over the agent
an interruption, a backchannel, its own echo, or noise? (Text rules; a learned end-of-turn model is
the next step, ../shared/LATENCY.md.)"""

from __future__ import annotations

import re
from typing import Literal

from agent.config import TurnPolicy

Overlap = Literal["noise", "echo", "backchannel", "interruption"]

# Words after which a sentence is very likely to go on, even when the ASR put a period there.
_DANGLING = frozenset(
    "and or but so because if than that which who whose whom when where while with without to of for "
    "from in on at by about into as the a an my your his her its our their this these those "
    "um uh er like".split()
)


def transcript_complete(text: str) -> bool:
    """Whether ``text`` reads as a finished utterance: it ends with . ! or ? (not an ellipsis), and
    its last word is not one that a sentence rarely ends on ("and", "the", "to", "um" ...)."""
    t = text.strip().rstrip("\"'”’)]")
    if not t or t.endswith(("...", "…")) or t[-1] not in ".!?":
        return False
    words = t.rstrip(".!?").split()
    return bool(words) and words[-1].lower().strip(",;:") not in _DANGLING


def classify_overlap(text: str, duration_s: float, policy: TurnPolicy, agent_text: str = "") -> Overlap:
    """What speech over the agent was: "noise" (no words), "echo" (mostly the agent's own recent
    words: its voice came back into the input), "backchannel" (only words from the backchannel list,
    and short), or "interruption" (anything else)."""
    words = re.findall(r"[a-z']+(?:-[a-z']+)*", text.lower())
    if not words:
        return "noise"
    own = set(re.findall(r"[a-z']+(?:-[a-z']+)*", agent_text.lower()))
    if own and len(words) >= 2 and sum(w in own for w in words) >= 0.7 * len(words):
        return "echo"
    phrase = " ".join(words)
    listed = policy.backchannels
    if duration_s <= policy.max_backchannel_s and (phrase in listed or all(w in listed for w in words)):
        return "backchannel"
    return "interruption"
