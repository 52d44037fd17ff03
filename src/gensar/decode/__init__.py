"""Decoding: trie-constrained beam search over T5 (``beam``), its decoder step and output head."""

from gensar.exports import lazy_exports

__all__ = [
    "RankedItems", "T5BeamDecoder", "beam_search", "constrained_beam_search", "identifier_log_probs",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.decode.beam": ("RankedItems", "beam_search", "constrained_beam_search"),
    "gensar.decode.t5_decoder": ("T5BeamDecoder",),
    "gensar.decode.score": ("identifier_log_probs",),
})
