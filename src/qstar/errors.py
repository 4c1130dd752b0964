"""The one exception type users see: a clear, one-line message instead of a traceback."""


class QstarError(Exception):
    """Bad input or configuration. The CLI prints ``qstar: error: <message>`` and exits 2."""


def where(path: object, line: int | None = None) -> str:
    """Format a location as ``file:line`` (or just ``file``) for error messages."""
    return f"{path}:{line}" if line is not None else str(path)
