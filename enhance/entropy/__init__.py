"""Entropy models and their bitstreams, shared by the latent codecs.

Training sees likelihoods (torch, differentiable); coding turns symbols into bytes with
`constriction`'s range coder. Why constriction rather than CompressAI's rANS: its decoder is
memory-safe Rust that ends in a clean error on any byte string (CompressAI's C++ decoder reads
out of bounds on crafted strings, InterDigitalInc/CompressAI#300), and it installs as one
wheel, without CompressAI's torchvision and pandas imports. The models follow CompressAI's
(Ballé et al. 2018's factorized density and mean-scale Gaussian conditional with a scale
table); `MeanScaleHyperprior` has CompressAI's `LatentCodec` shape: `compress` gives
`{"strings", "shape"}` and `decompress` takes them back.

Determinism across machines: every probability the coder sees comes from tables stored with
the weights (the factorized PMFs) or from a fixed scale table indexed by integers, never from
floats recomputed at decode time.
"""

from .coding import decode_categorical, decode_gaussian, encode_categorical, encode_gaussian
from .factorized import FactorizedDensity
from .framing import pack_strings, unpack_strings
from .gaussian import SCALE_TABLE, gaussian_likelihood, scale_indices
from .hyperprior import MeanScaleHyperprior

__all__ = [
    "FactorizedDensity",
    "MeanScaleHyperprior",
    "SCALE_TABLE",
    "decode_categorical",
    "decode_gaussian",
    "encode_categorical",
    "encode_gaussian",
    "gaussian_likelihood",
    "pack_strings",
    "scale_indices",
    "unpack_strings",
]
