"""Phonemes for Piper voices without espeak: hibari's own G2P (Apache-2.0, misaki's alphabet)
rewritten in the espeak-style IPA that Piper voices were trained on, then Piper's phoneme ids.

espeak-ng and Piper's phonemizer are GPL; voxloop depends on neither. The rewrite maps misaki's
one-letter diphthongs (A I O W Y) to their IPA pairs, its affricates to two letters, the flapped T
to ɾ, rhotic vowels to espeak's length-marked forms (ɜɹ -> ɜː, unstressed əɹ -> ɚ, ɑɹ -> ɑːɹ ...),
long vowels to their ː forms, and punctuation Piper has no id for to the nearest it has.

Piper's id sequence: BOS (^), then every phoneme's id followed by the pad id (_), then EOS ($).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Longest first: a rhotic vowel before its vowel alone.
_MULTI = (
    ("ɜɹ", "ɜː"),
    ("əɹ", "ɚ"),
    ("ɑɹ", "ɑːɹ"),
    ("ɔɹ", "ɔːɹ"),
)
_SINGLE = {
    "A": "eɪ",
    "I": "aɪ",
    "O": "oʊ",
    "Q": "oʊ",  # British GOAT: an American voice says oʊ
    "W": "aʊ",
    "Y": "ɔɪ",
    "T": "ɾ",
    "ʤ": "dʒ",
    "ʧ": "tʃ",
    "ʣ": "dz",
    "ʦ": "ts",
    "ᵊ": "ə",
    "g": "ɡ",
    "u": "uː",
    "ɑ": "ɑː",
    "ɔ": "ɔː",
    "—": ",",
    "…": ".",
    "“": '"',
    "”": '"',
}
# i is long (iː) except unstressed at the end of a word ("lazy": lˈeɪzi).
_LONG_I = re.compile(r"i(?![ \.,!?;:\"]|$)")


def to_espeak(phonemes: str) -> str:
    """misaki phonemes (hibari's G2P) -> espeak-style IPA."""
    text = _LONG_I.sub("\u0000", phonemes)  # mark the long i's before anything else moves
    out: list[str] = []
    i = 0
    while i < len(text):
        pair = next((b for a, b in _MULTI if text.startswith(a, i)), None)
        if pair is not None:
            out.append(pair)
            i += 2
            continue
        ch = text[i]
        out.append("iː" if ch == "\u0000" else _SINGLE.get(ch, ch))
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class PhonemeIds:
    ids: list[int]
    word_of: list[int]  # per id: the index of the word it belongs to, -1 for BOS/EOS/spaces/pads


PUNCTUATION = frozenset(",.!?;:\"-()'")


def to_ids(ipa: str, id_map: Mapping[str, list[int]]) -> PhonemeIds:
    """espeak-style IPA -> Piper ids (unknown symbols dropped) and which word each id sounds
    (punctuation and spaces belong to no word)."""
    pad, bos, eos = id_map["_"][0], id_map["^"][0], id_map["$"][0]
    ids, word_of = [bos, pad], [-1, -1]
    word, in_word = 0, False
    for ch in ipa:
        known = id_map.get(ch)
        if ch == " ":
            if in_word:
                word += 1
            in_word = False
        if not known:
            continue
        owner = -1
        if ch != " " and ch not in PUNCTUATION:
            owner, in_word = word, True
        for i in known:
            ids += [i, pad]
            word_of += [owner, owner]
    ids.append(eos)
    word_of.append(-1)
    return PhonemeIds(ids, word_of)
