"""Collaborative item embeddings for the ID stage: SASRec's item table, trained on the ``gensar``
protocol.

The rest of SASRec lives next to this: the model in ``gensar.embed.sasrec``, evaluation protocols
in ``gensar.embed.sasrec_protocols``, scoring and metrics in ``gensar.embed.sasrec_eval``, the
training loop in ``gensar.embed.sasrec_train``, the checkpoint in ``gensar.embed.sasrec_checkpoint``.
"""

from __future__ import annotations

import numpy as np

from gensar.data.prepared import PreparedData
from gensar.embed.sasrec import SASRecConfig
from gensar.embed.sasrec_protocols import gensar_protocol
from gensar.embed.sasrec_train import train_sasrec


def collaborative_embeddings(data: PreparedData, cfg: SASRecConfig, progress: bool = True) -> np.ndarray:
    """float32 [n_items, hidden]: SASRec's item table, row i = ``data.items`` row i.

    Trained on the ``gensar`` protocol's sequences (training events only), early-stopped on its
    rec validation examples.
    """
    proto = gensar_protocol(data)
    trained = train_sasrec(proto.train_seqs, len(data.items), cfg, valid=proto.valid, progress=progress)
    return trained.model.item_embeddings().numpy().astype(np.float32)
