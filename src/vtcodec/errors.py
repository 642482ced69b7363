"""One exception family for everything a user can get wrong.

Library code raises these with a message that quotes the bad value; only the CLI turns them
into one-line messages and exit codes.
"""


class VtcodecError(Exception):
    """Base class: a problem with the user's input, files or environment."""


class VideoError(VtcodecError):
    """The input video cannot be read, or is of a kind vtcodec refuses."""


class FormatError(VtcodecError):
    """A .vtk file is malformed, corrupted, truncated or of an unknown version."""


class ModelError(VtcodecError):
    """A tokenizer checkpoint is missing, mismatched or malformed."""


class OutputError(VtcodecError):
    """The output path is unusable (exists without --force, equals the input, ...)."""
