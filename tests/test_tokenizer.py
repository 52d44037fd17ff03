"""Tokenizer: MiniLM's WordPiece pruned to the corpus, with marker and identifier tokens."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gensar.errors import GensarError
from gensar.model.tokenizer import (
    TokenizerConfig,
    _wordpiece,
    build_tokenizer,
    check_tokens,
    extend_tokenizer,
    load_tokenizer,
    minilm_vocab,
)

CORPUS = [
    "Digital Caliper 6 inch. Industrial Scientific Measuring Calipers. Neiko",
    "Borosilicate glass beaker 250 ml. Lab Glassware Beakers. Pyrex",
    "Sanding rolls 80 grit. Abrasive Finishing Products Sanding Rolls. 3M",
    "measuring calipers",
    "lab glassware beakers",
    "sanding rolls",
] * 5
ID_TOKENS = [
    "<rec>",
    "<search>",
    "<t_rec>",
    "<s_a_0>",
    "<s_a_17>",
    "<s_b_3>",
    "<sem_a_201>",
    "<col_a_5>",
    "<sem_x_0>",
]
WORDS = [
    "digital",
    "caliper",
    "inch",
    "glass",
    "beaker",
    "sanding",
    "rolls",
    "grit",
    "lab",
    "pyrex",
    "80",
    "250",
]
_TOK = build_tokenizer(CORPUS, ID_TOKENS, TokenizerConfig())


@pytest.fixture(scope="module")
def tok():
    return _TOK


def test_layout_and_special_ids(tok):
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    # added tokens come last, in the order given
    assert tok.convert_tokens_to_ids(ID_TOKENS) == list(range(len(tok) - len(ID_TOKENS), len(tok)))
    assert len(tok) - len(ID_TOKENS) < 400  # the corpus pieces + ASCII fallback, not MiniLM's 30,522
    assert tok("sanding rolls").input_ids[-1] == tok.eos_token_id  # T5-style: </s> appended
    assert tok.is_fast


def test_id_tokens_are_atomic_and_case_sensitive(tok):
    ids = tok.encode("<rec><s_a_17>glass <sem_x_0>", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids) == ["<rec>", "<s_a_17>", "glass", "<sem_x_0>"]
    upper = tok.convert_ids_to_tokens(tok.encode("<S_A_17>", add_special_tokens=False))
    assert "<s_a_17>" not in upper and len(upper) > 1  # only the exact token string is an identifier token
    # decoding keeps identifier tokens even when special tokens are skipped
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == "<rec> <s_a_17> glass <sem_x_0>"


def test_text_round_trip_is_lowercased_words(tok):
    ids = tok.encode("Digital CALIPER 80 grit", add_special_tokens=False)
    assert tok.decode(ids) == "digital caliper 80 grit"
    assert tok.unk_token_id not in ids


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(WORDS + ID_TOKENS), min_size=1, max_size=12))
def test_round_trip_property(parts):
    text = " ".join(parts)
    assert _TOK.decode(_TOK.encode(text, add_special_tokens=False)) == text


def test_deterministic_and_faithful_to_minilm(tok):
    again = build_tokenizer(CORPUS, ID_TOKENS, TokenizerConfig())
    assert again.get_vocab() == tok.get_vocab()
    # the pruned vocabulary splits every corpus text exactly as the full MiniLM tokenizer does
    full = _wordpiece(minilm_vocab(), "[UNK]")
    for text in CORPUS[:6]:
        assert tok.tokenize(text) == full.encode(text, add_special_tokens=False).tokens


def test_unseen_ascii_words_never_unk(tok):
    ids = tok.encode("Zymurgy quux-42 @ #1", add_special_tokens=False)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == "zymurgy quux - 42 @ # 1"


def test_vocab_size_cap_keeps_most_frequent():
    corpus = ["water water water lab lab glass"]
    capped = build_tokenizer(corpus, [], TokenizerConfig(vocab_size=2))
    full = build_tokenizer(corpus, [], TokenizerConfig())
    assert set(full.get_vocab()) - set(capped.get_vocab()) == {"glass"}
    assert capped.tokenize("water lab glass") == ["water", "lab", "g", "##l", "##a", "##s", "##s"]
    assert full.tokenize("water lab glass") == ["water", "lab", "glass"]
    rare = build_tokenizer(corpus, [], TokenizerConfig(min_frequency=2))
    assert rare.tokenize("glass") == ["g", "##l", "##a", "##s", "##s"]


def test_save_load_with_auto_tokenizer(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(str(tmp_path))
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "<t_rec> <rec> <s_a_0> <col_a_5> glass beaker 250 ml"
    assert again(text).input_ids == tok(text).input_ids
    assert again.get_vocab() == tok.get_vocab()
    assert load_tokenizer(tmp_path).get_vocab() == tok.get_vocab()
    with pytest.raises(GensarError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "missing")


def test_extend_pretrained_tokenizer(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(str(tmp_path))
    base = AutoTokenizer.from_pretrained(str(tmp_path))
    before = len(base)
    extended = extend_tokenizer(base, ["<rec>", "<col_b_30>"])  # one already present, one new
    assert len(extended) == before + 1
    check_tokens(extended, ["<col_b_30>", "<s_a_17>"])
    with pytest.raises(GensarError, match="does not keep '<col_b_31>' as one token"):
        check_tokens(extended, ["<col_b_31>"])
