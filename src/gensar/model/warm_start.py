"""Start a training from a trained model's weights (``gensar train --init-from MODEL_DIR``).

A refresh (``gensar pipeline --refresh-from RUN0``) trains on newer data whose vocabulary differs
from the previous model's: new query words, new identifier tokens. The new model is built for the
new tokenizer as usual, then takes every weight of the previous one: each token's embedding row by
the token's string (a WordPiece piece or an identifier token is the same string in both
vocabularies), every other tensor as it is. Tokens the previous model never had keep their fresh
initialization. The tied output layer shares the embedding rows, so it follows them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gensar.errors import GensarError
from gensar.model.backbone import load_model

__all__ = ["warm_start"]

EMBEDDING_KEYS = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")


@torch.no_grad()
def warm_start(model, tokenizer, source: str | Path) -> dict[str, int]:
    """Copy the weights of the model saved in ``source`` into ``model`` (built for ``tokenizer``);
    returns how many tokens were carried and how many are new. Another shape is an error."""
    previous, previous_tokenizer = load_model(source)
    ours, theirs = model.state_dict(), previous.state_dict()
    for key, value in ours.items():
        if key in EMBEDDING_KEYS:
            continue
        if key not in theirs or theirs[key].shape != value.shape:
            got = "absent" if key not in theirs else tuple(theirs[key].shape)
            raise GensarError(f"{source}: cannot start from this model: its {key} is {got}, this model's "
                              f"{tuple(value.shape)} (model.backbone must be the previous run's)")
        value.copy_(theirs[key])
    old_rows = previous_tokenizer.get_vocab()
    pairs = [(row, old_rows[token]) for token, row in tokenizer.get_vocab().items() if token in old_rows]
    new_rows, from_rows = (torch.tensor(x, dtype=torch.long) for x in zip(*pairs, strict=True))
    embedding = model.get_input_embeddings().weight
    embedding[new_rows] = previous.get_input_embeddings().weight[from_rows].to(embedding.dtype)
    if not model.config.tie_word_embeddings:  # an untied head (a pretrained backbone) maps the same way
        model.lm_head.weight[new_rows] = previous.lm_head.weight[from_rows].to(embedding.dtype)
    return {"carried_tokens": len(pairs), "new_tokens": len(tokenizer) - len(pairs)}
