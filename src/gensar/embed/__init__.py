"""Item embeddings: semantic (a sentence encoder over item text) and collaborative (SASRec)."""

from gensar.exports import lazy_exports

__all__ = [
    "SASRec", "SASRecConfig", "SemanticConfig", "TrainedSASRec", "collaborative_embeddings", "encode_items",
    "load_sasrec", "train_sasrec",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.embed.sasrec": ("SASRec", "SASRecConfig"),
    "gensar.embed.collaborative": ("collaborative_embeddings",),
    "gensar.embed.sasrec_checkpoint": ("TrainedSASRec", "load_sasrec"),
    "gensar.embed.sasrec_train": ("train_sasrec",),
    "gensar.embed.semantic": ("SemanticConfig", "encode_items"),
})
