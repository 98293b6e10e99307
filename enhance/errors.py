"""Errors a user can act on. Their message names the file (if any) and the reason."""


class EnhanceError(Exception):
    """Base class: the CLI prints the message alone, never a traceback."""


class CodecUnavailable(EnhanceError):
    """A codec's library or binary is missing; the message says what to install."""


class BadInput(EnhanceError):
    """An input file that cannot be used: truncated, corrupt, not an image, too large."""


class WeightsError(EnhanceError):
    """A weights file that is missing, or does not match weights.lock."""


class ContainerError(BadInput):
    """A container file that is truncated, corrupt or of an unknown version."""
