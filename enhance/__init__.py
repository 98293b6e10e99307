"""enhance: make images decoded by standard and neural codecs look real again."""

__version__ = "0.1.0"
