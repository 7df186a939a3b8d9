"""The errors of training and of reading a run back (data errors are :class:`s3dgs.data.frames.DataError`)."""


class TrainError(ValueError):
    """A configuration that cannot train; the message says what to change."""


class RunError(ValueError):
    """A run folder that cannot be read back (no config, no checkpoint); the message names the file and the fix."""
