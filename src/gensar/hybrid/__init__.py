"""Hybrid generative retrieval: generative beam + text/collaborative retrievers, fused."""
