"""User-facing errors. The CLI prints `VgsError` as one line and exits non-zero; anything else is a bug."""


class VgsError(Exception):
    """A problem with the user's input, files or settings (never a programming error)."""


class ConfigError(VgsError):
    """A configuration that does not match the typed schema (unknown key, wrong type, bad value)."""


class CheckpointError(VgsError):
    """A checkpoint file that is missing, corrupt, from another stage or of an unknown format."""


class DataError(VgsError):
    """A dataset, shard or media file that cannot be used."""
