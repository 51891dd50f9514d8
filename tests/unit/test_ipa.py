"""hibari's phonemes in Piper's espeak-style IPA, and Piper's id layout: golden outputs."""

from __future__ import annotations

import pytest
from hibari.g2p import G2P

from agent.tts.ipa import to_espeak, to_ids

GOLDEN = [
    ("Hello world, how are you today?", "həlˈoʊ wˈɜːld, hˌaʊ ɑːɹ juː tədˈeɪ?"),
    ("The quick brown fox jumps over the lazy dog!", "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˈoʊvɚ ðə lˈeɪzi dˈɔːɡ!"),
    ("Four birds sang over the water.", "fˈɔːɹ bˈɜːdz sˈæŋ ˈoʊvɚ ðə wˈɔːɾɚ."),
    ("She sees the cheese.", "ʃˌi sˈiːz ðə tʃˈiːz."),
]


@pytest.mark.parametrize(("text", "ipa"), GOLDEN)
def test_hibari_phonemes_become_espeak_style_ipa(text: str, ipa: str) -> None:
    assert to_espeak(G2P(british=False)(text)) == ipa


def test_no_misaki_only_symbol_survives() -> None:
    out = to_espeak("ˈA ˈI ˈO ˈW ˈY ˈQ T ʤ ʧ ᵊ g — … “x”")
    assert not set(out) & set("AIOWYQTʤʧᵊg—…“”")


ID_MAP = {"_": [0], "^": [1], "$": [2], " ": [3], ",": [8], "h": [20], "i": [21], "ː": [122]}


def test_ids_are_bos_each_phoneme_then_pad_and_eos() -> None:
    out = to_ids("hiː, hi", ID_MAP)
    assert out.ids == [1, 0, 20, 0, 21, 0, 122, 0, 8, 0, 3, 0, 20, 0, 21, 0, 2]
    # words: "hiː" is word 0, "hi" word 1; BOS, comma, space and EOS belong to none
    assert out.word_of == [-1, -1, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, 1, 1, 1, 1, -1]


def test_symbols_without_an_id_are_dropped() -> None:
    assert to_ids("h☃i", ID_MAP).ids == [1, 0, 20, 0, 21, 0, 2]
