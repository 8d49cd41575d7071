"""User-facing errors. The CLI prints `VgsError` as one line and exits with its `exit_code`; anything else
is a bug (exit 1 with a one-line summary; VGS_DEBUG=1 shows the traceback).

Exit codes: 0 done; 1 a fault of the machine or its files (disk full, read-only or unwritable output, a bug);
2 bad arguments or input (wrong option value, unusable data, an output path with a file in the way);
130 interrupted (Ctrl-C / SIGINT: what was finished is kept, re-running the same command resumes).
"""


class VgsError(Exception):
    """A problem with the user's input, files or settings (never a programming error)."""

    exit_code = 2


class ConfigError(VgsError):
    """A configuration that does not match the typed schema (unknown key, wrong type, bad value)."""


class CheckpointError(VgsError):
    """A checkpoint file that is missing, corrupt, from another stage or of an unknown format."""


class DataError(VgsError):
    """A dataset, shard or media file that cannot be used."""


class OutputError(VgsError):
    """An output that cannot be written through no fault of the arguments: no space left, a read-only file
    system, no permission. Built by `fsutil.output_error`, which names the user's path, never a temp file."""

    exit_code = 1


class OutputInTheWay(OutputError):
    """An output path that cannot be created because something is in the way (a file where a folder must
    be, or a folder where the file goes): a bad argument."""

    exit_code = 2


class Interrupted(VgsError):
    """Ctrl-C (SIGINT) after the command saved what a re-run resumes from; the message says what was kept."""

    exit_code = 130
