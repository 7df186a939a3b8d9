"""The base of every error s3dgs and preprocess raise on purpose (bad input, configuration or environment): the
message is one line that says what to change, and every command-line entry point catches :class:`S3dgsError` to
print it as ``error: <message>`` instead of a traceback."""


class S3dgsError(Exception):
    """An error of ours with a one-line message that says what to change. Subclasses also derive from the builtin
    error they stand for (``ValueError`` for bad input, ``RuntimeError`` for a failing environment)."""
