"""Exceptions that the CLI turns into a one-line message and a non-zero exit."""


class SalnasError(Exception):
    """A user-facing error: the message names the file or setting and what to do."""


class DatasetError(SalnasError):
    """A dataset cannot be used as it is; ``problems`` lists every file-level problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class ConfigError(SalnasError):
    """A config file or setting is invalid."""


class OutputError(SalnasError, OSError):
    """An output cannot be written (disk full, no permission, a file where a folder belongs).

    Still an :class:`OSError` carrying the ``errno``, for callers that handle those; its
    message names the path.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.errno = errno

    def __str__(self) -> str:
        return self.message
