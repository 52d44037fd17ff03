"""Which collaborative embedding for a new item gives it the codes its interactions would have?

    python benchmarks/bench_cold_start.py RUN_DIR [--folds 5]

Over the trained items of RUN_DIR/ids (``gensar.ids.cold_start.held_out_agreement``): hide one
fold, predict its items' collaborative embeddings from their semantic ones with each predictor
fitted on the other folds, encode with the run's trained RQ-VAE, and compare the codes with the
ones the real embeddings get. Prints a markdown table (benchmarks/README.md, "A living catalog").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gensar.ids.cold_start import KnnMean, MeanPredictor, RidgeMap, held_out_agreement
from gensar.ids.extend import level_codes
from gensar.ids.item_ids import COLLABORATIVE, SEMANTIC
from gensar.ids.rqvae import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    ids = args.run_dir / "ids"
    semantic = np.load(ids / "semantic_emb.npy")
    collaborative = np.load(ids / "collaborative_emb.npy")
    model = load_checkpoint(ids / "rqvae.pt")

    def encode(sem: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = level_codes(model, sem, col)
        return codes[SEMANTIC].codes, codes[COLLABORATIVE].codes

    predictors = {"mean (no information)": MeanPredictor()}
    predictors |= {f"ridge l2={l2:g}": RidgeMap(l2) for l2 in (0.1, 1.0, 10.0)}
    predictors |= {f"knn k={k}": KnnMean(k) for k in (1, 5, 10, 20)}
    print(f"{len(semantic)} items, {args.folds}-fold, codebook {model.cfg.codebook_size}, variant {model.cfg.variant}")
    print("| predictor | collaborative ID = own | collaborative levels = own | leading collaborative levels = own "
          "| semantic ID = own | semantic levels = own | leading semantic levels = own | cosine to own embedding |")
    print("|---|---|---|---|---|---|---|---|")
    for name, predictor in predictors.items():
        r = held_out_agreement(encode, semantic, collaborative, predictor, folds=args.folds)
        print(f"| {name} | {r['collaborative_id_match']:.3f} | {r['collaborative_level_match']:.3f} | "
              f"{r['collaborative_prefix_levels']:.2f} | {r['semantic_id_match']:.3f} | "
              f"{r['semantic_level_match']:.3f} | {r['semantic_prefix_levels']:.2f} | {r['embedding_cosine']:.3f} |")


if __name__ == "__main__":
    main()
