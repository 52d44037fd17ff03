"""Data: load a dataset (``load_dataset``), prepare it (``gensar.data.prepare.prepare``), read a prepared
directory (``PreparedData``), write canonical files, generate the synthetic world."""

from gensar.exports import lazy_exports

__all__ = [
    "PrepareConfig", "PreparedData", "RawDataset", "SynthConfig", "detect_format", "generate_world",
    "load_dataset", "read_canonical", "read_items_file", "write_canonical",
]
__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    "gensar.data.prepared": ("PreparedData",),
    "gensar.data.prepare": ("PrepareConfig",),
    "gensar.data.schema": ("RawDataset",),
    "gensar.data.loaders": ("load_dataset", "detect_format"),
    "gensar.data.canonical": ("read_canonical", "read_items_file"),
    "gensar.data.canonical_writer": ("write_canonical",),
    "gensar.data.synth": ("SynthConfig", "generate_world"),
})
