"""enhance: make images decoded by standard and neural codecs look real again."""

__version__ = "0.1.0"


# --- viewer hook and single files (imports are deferred: `import enhance` stays light) ---


def open(path, **options):
    """The JPEG at `path`, enhanced, as a PIL image (cached by content); see `enhance.viewer.open`."""
    from .viewer import open as open_enhanced

    return open_enhanced(path, **options)


def open_array(path, **options):
    """The JPEG at `path`, enhanced, as uint8 HxWx3 RGB; see `enhance.viewer.open_array`."""
    from .viewer import open_array as open_enhanced_array

    return open_enhanced_array(path, **options)


def enhance_file(input_path, output_path, **options):
    """Enhances one JPEG into `output_path`, keeping EXIF, ICC and XMP; see `enhance.runs.enhance_file`."""
    from .runs import enhance_file as enhance_one

    return enhance_one(input_path, output_path, **options)


# --- base codecs -------------------------------------------------------------------


def encode(image, codec: str, rate, **options) -> bytes:
    """Encodes an image (uint8 HxWx3 array or path) with a base or full codec; see `enhance.api.encode_bitstream`."""
    from .api import encode_bitstream

    return encode_bitstream(image, codec, rate, **options)


def decode(data: bytes, **options):
    """Decodes any supported bitstream or container to uint8 HxWx3; see `enhance.api.decode_bitstream`."""
    from .api import decode_bitstream

    return decode_bitstream(data, **options)


# --- comparing codecs ----------------------------------------------------------------


def compare(dataset, output, **options):
    """A codec with and without the enhancer over a dataset, written to `output`; see `enhance.comparison.compare`."""
    from .comparison import compare as run_comparison

    return run_comparison(dataset, output, **options)
