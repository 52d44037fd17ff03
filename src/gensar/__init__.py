"""gensar: unified generative search and recommendation."""

__version__ = "0.1.0"
