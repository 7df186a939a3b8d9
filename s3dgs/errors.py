"""The trainer's error for bad configurations (data errors are :class:`s3dgs.data.frames.DataError`)."""


class TrainError(ValueError):
    """A configuration that cannot train; the message says what to change."""
