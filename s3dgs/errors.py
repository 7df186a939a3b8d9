"""The errors of training and of reading a run back (data errors are :class:`s3dgs.data.frames.DataError`)."""

from preprocess.errors import S3dgsError


class TrainError(S3dgsError, ValueError):
    """A configuration that cannot train; the message says what to change."""


class RunError(S3dgsError, ValueError):
    """A run folder that cannot be read back (no config, no checkpoint); the message names the file and the fix."""
