"""Document metadata as JSON: what document software submits and what the API returns.

Goals: the submit API takes the envelope in the same shape as the envelope's own value form
(``Envelope.to_value()``: ``to``, ``number``, ``notation``, ``promulgation_date``,
``subject``, ``signer``...), made friendlier where it costs nothing: ``from`` may be left out
(it is this node's agency), recipients may be bare agency codes, and ``deadline`` (seconds)
may ride along. Every refusal is an :class:`~p2pdoc.errors.InvalidField` naming the field
(``to[1]``, ``signer``) so that a client can point at it. Non-goals: edXML XML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from p2pdoc.errors import InvalidField, InvalidValue
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.ids import AgencyCode

from .config import MAX_SECONDS

__all__ = ["REQUIRED_FIELDS", "envelope_from_json", "guess_field"]

REQUIRED_FIELDS: Final = ("to", "number", "notation", "promulgation_date", "subject", "signer")
_EXTRA_FIELDS: Final = frozenset({"deadline"})
_ENVELOPE_FIELDS: Final = frozenset(
    {
        "from", "to", "number", "notation", "promulgation_date", "subject", "signer",
        "document_type", "priority", "steering_type", "business", "classification",
        "promulgation_place", "content", "due_date", "sphere", "page_amount", "appendixes",
        "response_for",
    }
)  # fmt: skip
_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "number": (int,),
    "notation": (str,),
    "promulgation_date": (str,),
    "subject": (str,),
    "signer": (dict,),
    "document_type": (dict,),
    "priority": (int,),
    "steering_type": (int,),
    "business": (dict,),
    "classification": (int,),
    "promulgation_place": (str,),
    "content": (str,),
    "due_date": (str,),
    "sphere": (str,),
    "page_amount": (int,),
    "appendixes": (list,),
    "response_for": (list,),
    "deadline": (int, float),
}
# Phrases of the model's messages -> the field they concern (first match wins).
_PHRASES: Final = (
    ("promulgation date", "promulgation_date"),
    ("promulgation place", "promulgation_place"),
    ("due date", "due_date"),
    ("signer", "signer"),
    ("document type", "document_type"),
    ("steering type", "steering_type"),
    ("business", "business"),
    ("response-for", "response_for"),
    ("document id", "response_for"),
    ("appendix", "appendixes"),
    ("page amount", "page_amount"),
    ("classification", "classification"),
    ("priority", "priority"),
    ("document number", "number"),
    ("notation", "notation"),
    ("subject", "subject"),
    ("content", "content"),
    ("sphere", "sphere"),
    ("recipient", "to"),
    ("organization", "to"),
)


def guess_field(message: str) -> str:
    """The field a model validation message is about (``metadata`` if none is recognised)."""
    lowered = message.lower()
    for phrase, name in _PHRASES:
        if phrase in lowered:
            return name
    return "metadata"


def _organization(value: object, where: str) -> dict[str, object]:
    if isinstance(value, str):
        return {"code": value}
    if isinstance(value, dict):
        if "code" not in value:
            raise InvalidField(f"{where}.code", "is required", code="missing_field")
        return dict(value)
    raise InvalidField(where, "must be an agency code or an object with a code")


def envelope_from_json(
    value: object,
    *,
    sender: AgencyCode,
    sender_name: str = "",
    is_known: Callable[[AgencyCode], bool] | None = None,
) -> tuple[Envelope, float | None]:
    """Validate submitted metadata and build the envelope.

    Args:
        value: the decoded JSON.
        sender: this node's agency (the only allowed ``from``).
        sender_name: filled in as ``from.name`` when ``from`` is left out.
        is_known: whether a recipient agency has a known node; unknown ones are refused
            (``unknown_agency``) before anything is stored.

    Returns:
        The envelope and the ``deadline`` in seconds (None: the node's default).

    Raises:
        InvalidField: the first problem found; ``field`` names where it is.
    """
    if not isinstance(value, dict):
        raise InvalidField("metadata", "must be a JSON object")
    for name in value:
        if name not in _ENVELOPE_FIELDS and name not in _EXTRA_FIELDS:
            raise InvalidField(str(name), "unknown field", code="unknown_field")
    for name in REQUIRED_FIELDS:
        if name not in value:
            raise InvalidField(name, "is required", code="missing_field")
    for name, kinds in _TYPES.items():
        if name in value and (not isinstance(value[name], kinds) or isinstance(value[name], bool)):
            raise InvalidField(name, f"must be {_kind_name(kinds)}")
    document: dict[str, object] = {k: v for k, v in value.items() if k not in _EXTRA_FIELDS}
    source = _organization(value.get("from", {"code": str(sender)}), "from")
    if source.get("code") != str(sender):
        raise InvalidField("from", f"this node sends for {sender}, not {source.get('code')!r}")
    if "from" not in value and sender_name:
        source["name"] = sender_name
    document["from"] = source
    to = value["to"]
    if not isinstance(to, list) or not to:
        raise InvalidField("to", "must be a non-empty list of recipients")
    recipients = []
    for i, item in enumerate(to):
        organization = _organization(item, f"to[{i}]")
        try:
            code = AgencyCode(str(organization["code"]))
        except InvalidValue as exc:
            raise InvalidField(f"to[{i}]", str(exc)) from None
        if code == sender:
            raise InvalidField(f"to[{i}]", "a document is not sent to its own agency")
        if is_known is not None and not is_known(code):
            raise InvalidField(
                f"to[{i}]", f"no node is known for agency {code}", code="unknown_agency"
            )
        recipients.append(organization)
    document["to"] = recipients
    deadline = value.get("deadline")
    if deadline is not None and not 0 < deadline <= MAX_SECONDS:
        raise InvalidField(
            "deadline", f"must be a number of seconds, 0 < deadline <= {MAX_SECONDS}"
        )
    try:
        envelope = Envelope.from_value(document)
    except InvalidValue as exc:
        raise InvalidField(guess_field(str(exc)), str(exc)) from None
    except (TypeError, KeyError) as exc:
        raise InvalidField("metadata", f"malformed: {exc}") from None
    return envelope, None if deadline is None else float(deadline)


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "text", dict: "an object", list: "a list"}
    if kinds == (int, float):
        return "a number"
    return " or ".join(names[k] for k in kinds)


def envelope_to_json(envelope: Envelope) -> Mapping[str, object]:
    """The envelope as JSON (its value form: dates as ``YYYY-MM-DD``)."""
    value = envelope.to_value()
    assert isinstance(value, dict)
    return value
