"""Load the critics written by ``qstar train-critics`` into the bundle every search takes."""

from __future__ import annotations

from pathlib import Path

from qstar.critics.model import ROLES, SPEC_NAME, HFCritic
from qstar.errors import QstarError
from qstar.search.common import Critics


def load_critics(path: Path) -> Critics:
    """The critics found in ``path/value``, ``path/prm`` and ``path/orm``; a missing one stays None."""
    path = Path(path)
    found = {role: HFCritic.load(path / role) for role in ROLES if (path / role / SPEC_NAME).is_file()}
    if not found:
        raise QstarError(f"--critics {path}: no trained critics (expected value/, prm/ or orm/ inside)")
    for role, critic in found.items():
        if critic.name != role:
            raise QstarError(f"--critics {path}: {role}/ holds a {critic.name} critic")
    return Critics(**found)


__all__ = ["load_critics"]
