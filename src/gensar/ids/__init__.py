"""Item identifiers: RQ-VAE codes made unique (``build_ids``), their file (``IdMaps``), the prefix trie."""

from gensar.exports import lazy_exports

__all__ = [
    "COLLABORATIVE", "ColdStartConfig", "IdExtender", "IdMaps", "IdTrie", "IdsConfig", "RQVAE", "RQVAEConfig",
    "SEMANTIC", "build_ids",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.ids.stage": ("IdsConfig", "build_ids"),
    "gensar.ids.item_ids": ("COLLABORATIVE", "SEMANTIC", "IdMaps"),
    "gensar.ids.trie": ("IdTrie",),
    "gensar.ids.rqvae": ("RQVAE", "RQVAEConfig"),
    "gensar.ids.cold_start": ("ColdStartConfig",),
    "gensar.ids.extend": ("IdExtender",),
})
