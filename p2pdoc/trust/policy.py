"""The classification policy: what may be sent electronically, and how.

Goals: one frozen configuration object maps each security classification to a handling
(plain, sealed, refused) and refuses a send - or an incoming document - that breaks it with
a message a clerk understands. Non-goals: access control inside an agency, downgrading.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from p2pdoc.errors import InvalidValue, PolicyRefused
from p2pdoc.model.envelope import Classification
from p2pdoc.model.manifest import Manifest

__all__ = ["ClassificationPolicy", "Handling"]


class Handling(enum.StrEnum):
    """How documents of one classification may travel."""

    PLAIN = "plain"
    """May travel unsealed (sealing is allowed)."""
    SEALED = "sealed"
    """Must be sealed to its recipients' node keys."""
    REFUSED = "refused"
    """Must not travel through the mesh at all."""


_NAMES = {
    Classification.PUBLIC: "public",
    Classification.INTERNAL: "internal",
    Classification.CONFIDENTIAL: "confidential (mật)",
    Classification.SECRET: "secret (tối mật)",
    Classification.TOP_SECRET: "top secret (tuyệt mật)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassificationPolicy:
    """Handling per classification; the defaults follow the rule that classified documents
    are sealed and the two highest levels never travel electronically."""

    public: Handling = Handling.PLAIN
    """Unclassified documents."""
    internal: Handling = Handling.PLAIN
    """For use inside the administration."""
    confidential: Handling = Handling.SEALED
    """Mật: sealed end to end."""
    secret: Handling = Handling.REFUSED
    """Tối mật: not through the mesh."""
    top_secret: Handling = Handling.REFUSED
    """Tuyệt mật: not through the mesh."""

    def __post_init__(self) -> None:
        for name in ("public", "internal", "confidential", "secret", "top_secret"):
            try:
                object.__setattr__(self, name, Handling(getattr(self, name)))
            except ValueError:
                raise InvalidValue(f"policy {name}: unknown handling") from None

    def handling(self, classification: Classification) -> Handling:
        """The handling of ``classification``."""
        level = Classification(classification)
        return {
            Classification.PUBLIC: self.public,
            Classification.INTERNAL: self.internal,
            Classification.CONFIDENTIAL: self.confidential,
            Classification.SECRET: self.secret,
            Classification.TOP_SECRET: self.top_secret,
        }[level]

    def check(self, classification: Classification, *, sealed: bool) -> None:
        """Allow or refuse a document of ``classification``, sealed or not.

        Raises:
            PolicyRefused: refused classification, or unsealed where sealing is required.
        """
        handling = self.handling(classification)
        name = _NAMES[Classification(classification)]
        if handling is Handling.REFUSED:
            raise PolicyRefused(
                f"a {name} document may not be sent through the document exchange; use the "
                "channel prescribed for classified documents"
            )
        if handling is Handling.SEALED and not sealed:
            raise PolicyRefused(
                f"a {name} document must be sealed to its recipients before it is sent"
            )

    def check_manifest(self, manifest: Manifest) -> None:
        """:meth:`check` for a manifest, before sending or on receipt.

        Raises:
            PolicyRefused: as :meth:`check`.
        """
        self.check(manifest.envelope.classification, sealed=manifest.seal is not None)
