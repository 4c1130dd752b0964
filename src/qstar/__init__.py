"""qstar: search-based reasoning and self-improvement for language models.

Importing ``qstar`` is cheap: torch, transformers and trl are imported only by the
modules that need them, so the CLI answers ``--help`` at once.
"""

__version__ = "0.1.0"

from qstar.errors import QstarError  # noqa: E402

__all__ = ["QstarError", "__version__"]
