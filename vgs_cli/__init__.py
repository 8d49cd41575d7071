"""vgs: visually guided sound generation (SpecVQGAN, reimplemented)."""

__version__ = "0.1.0"
