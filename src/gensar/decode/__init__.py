"""Decoding: trie-constrained beam search over T5 (``beam``), its decoder step and output head."""
