"""PerCo, "Towards image compression with perfect realism at ultra-low bitrates" (Careil,
Muckley, Verbeek, Lathuilière, 2024), as an `enhance.full_codecs` plugin over enhance's latent
space and latent prior."""

from .codec import PercoCodec

__all__ = ["PercoCodec"]
