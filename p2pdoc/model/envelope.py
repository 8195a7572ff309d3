"""The edXML envelope header (QCVN 102:2016) as immutable, validated value types.

Field names follow edXML's MessageHeader where one exists (``From`` -> ``sender``, ``To`` ->
``recipients``, ``Code`` -> ``number``/``notation``, ``PromulgationInfo`` ->
``promulgation_place``/``promulgation_date``, ``SignerInfo`` -> ``signer``, ``OtherInfo`` ->
``priority``/``sphere``/``page_amount``/``appendixes``, ``Bussiness`` -> ``business``).
The hop trail (``TraceHeaderList``) is not part of the header: it changes on every hop and so
cannot be inside what is signed; it travels beside the document (see the protocol spec).

Every type converts to and from a canonical-CBOR value with ``to_value()`` /
``from_value()``; ``from_value`` validates like the constructor and raises
:class:`~p2pdoc.errors.InvalidValue` (wrapped into ``DecodeError`` by callers decoding bytes).
"""

from __future__ import annotations

import datetime as _dt
import enum
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from p2pdoc.codecs.cbor import Value
from p2pdoc.errors import InvalidValue
from p2pdoc.model.ids import AgencyCode, DocumentId

__all__ = [
    "BusinessInfo",
    "BusinessType",
    "Classification",
    "DocumentType",
    "Envelope",
    "Organization",
    "Priority",
    "ResponseFor",
    "SignerInfo",
    "SteeringType",
]

MAX_TEXT: Final = 2000
MAX_SHORT_TEXT: Final = 250
MAX_RECIPIENTS: Final = 1000
MAX_LIST: Final = 100


def text(value: object, what: str, *, limit: int = MAX_SHORT_TEXT, required: bool = False) -> str:
    """Validate a text field: str, NFC-normalised, within ``limit``, no control characters
    other than newline and tab."""
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be text, not {type(value).__name__}")
    if not value.isascii():  # ASCII text is always in NFC
        value = unicodedata.normalize("NFC", value)
    if required and not value.strip():
        raise InvalidValue(f"{what} is required")
    if len(value) > limit:
        raise InvalidValue(f"{what} is longer than {limit} characters")
    # Printable text has no character of the categories Cc, Cs, Co or Cn (nor Cf, Zl, Zp or
    # Zs other than the space, which are allowed): only other text needs the per-character
    # check.
    if not value.isprintable():
        for char in value:
            if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn"):
                raise InvalidValue(f"{what} contains a forbidden character U+{ord(char):04X}")
    return value


def _date_value(value: _dt.date) -> str:
    return value.isoformat()


def _parse_date(value: object, what: str) -> _dt.date:
    if not isinstance(value, str) or len(value) != 10:
        raise InvalidValue(f"{what} must be a date YYYY-MM-DD")
    try:
        return _dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"{what} {value!r} is not a valid date") from None


def _mapping(
    value: object, what: str, keys: frozenset[str], required: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    """Check that ``value`` is a map with only ``keys`` and every ``required`` key in it."""
    if not isinstance(value, Mapping):
        raise InvalidValue(f"{what} must be a map")
    unknown = set(value) - keys
    if unknown:
        raise InvalidValue(f"{what} has unknown field {sorted(unknown)[0]!r}")
    for key in required:
        if key not in value:
            raise InvalidValue(f"{what} field {key!r} is required")
    return value


def _int(value: object, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidValue(f"{what} must be an integer {lo}..{hi}")
    return value


class BusinessType(enum.IntEnum):
    """edXML ``BussinessDocType``: what this document does to an earlier one."""

    NEW = 0
    REVOKE = 1
    UPDATE = 2
    REPLACE = 3


class Priority(enum.IntEnum):
    """edXML ``Priority`` (độ khẩn)."""

    NORMAL = 0
    URGENT = 1  # khẩn
    VERY_URGENT = 2  # thượng khẩn
    FLASH = 3  # hỏa tốc
    FLASH_TIMED = 4  # hỏa tốc hẹn giờ


class SteeringType(enum.IntEnum):
    """edXML ``SteeringType``: 0 not a directive, 1 directive, 2 report, 3 for reference."""

    NONE = 0
    DIRECTIVE = 1
    REPORT = 2
    REFERENCE = 3


class Classification(enum.IntEnum):
    """Security classification (độ mật); the policy decides what each level may do."""

    PUBLIC = 0
    INTERNAL = 1
    CONFIDENTIAL = 2  # mật
    SECRET = 3  # tối mật
    TOP_SECRET = 4  # tuyệt mật


def _enum(cls: type[enum.IntEnum], value: object, what: str) -> Any:
    try:
        return cls(_int(value, what, 0, 255))
    except ValueError:
        raise InvalidValue(f"{what} {value!r} is not one of {[m.value for m in cls]}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Organization:
    """An agency as named in the header: its code, and optionally name and contacts."""

    code: AgencyCode
    name: str = ""
    contact: str = ""
    email: str = ""
    phone: str = ""
    address: str = ""

    _KEYS = frozenset({"code", "name", "contact", "email", "phone", "address"})

    def __post_init__(self) -> None:
        if not isinstance(self.code, AgencyCode):
            raise InvalidValue("organization code must be an AgencyCode")
        for name in ("name", "contact", "email", "phone", "address"):
            object.__setattr__(self, name, text(getattr(self, name), f"organization {name}"))

    def to_value(self) -> Value:
        out: dict[str, Value] = {"code": str(self.code)}
        for name in ("name", "contact", "email", "phone", "address"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_value(cls, value: Value) -> Organization:
        m = _mapping(value, "organization", cls._KEYS)
        code = m.get("code")
        if not isinstance(code, str):
            raise InvalidValue("organization code is required")
        return cls(code=AgencyCode(code), **{k: m[k] for k in m if k != "code"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SignerInfo:
    """Who signed, as printed on the document: competence (e.g. "TM."), position, full name."""

    full_name: str
    position: str = ""
    competence: str = ""

    _KEYS = frozenset({"full_name", "position", "competence"})

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "full_name", text(self.full_name, "signer full name", required=True)
        )
        object.__setattr__(self, "position", text(self.position, "signer position"))
        object.__setattr__(self, "competence", text(self.competence, "signer competence"))

    def to_value(self) -> Value:
        out: dict[str, Value] = {"full_name": self.full_name}
        if self.position:
            out["position"] = self.position
        if self.competence:
            out["competence"] = self.competence
        return out

    @classmethod
    def from_value(cls, value: Value) -> SignerInfo:
        return cls(**_mapping(value, "signer", cls._KEYS, ("full_name",)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentType:
    """edXML ``DocumentType``: a numeric type and its name (e.g. 1, "Công văn")."""

    code: int
    name: str

    def __post_init__(self) -> None:
        _int(self.code, "document type code", 0, 9999)
        object.__setattr__(self, "name", text(self.name, "document type name", required=True))

    def to_value(self) -> Value:
        return {"code": self.code, "name": self.name}

    @classmethod
    def from_value(cls, value: Value) -> DocumentType:
        keys = ("code", "name")
        return cls(**_mapping(value, "document type", frozenset(keys), keys))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFor:
    """edXML ``ResponseFor``: the document this one answers."""

    document_id: DocumentId

    def __post_init__(self) -> None:
        if not isinstance(self.document_id, DocumentId):
            raise InvalidValue("response-for needs a DocumentId")

    def to_value(self) -> Value:
        return str(self.document_id)

    @classmethod
    def from_value(cls, value: Value) -> ResponseFor:
        if not isinstance(value, str):
            raise InvalidValue("response-for must be a document id text")
        return cls(document_id=DocumentId.parse(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class BusinessInfo:
    """edXML ``Bussiness``: new, or revoke/update/replace an earlier document."""

    type: BusinessType = BusinessType.NEW
    reason: str = ""
    target: DocumentId | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", _enum(BusinessType, self.type, "business type"))
        object.__setattr__(self, "reason", text(self.reason, "business reason", limit=MAX_TEXT))
        if self.type is BusinessType.NEW:
            if self.target is not None:
                raise InvalidValue("a new document has no business target")
        elif not isinstance(self.target, DocumentId):
            raise InvalidValue(f"business type {self.type.name} needs the target document id")

    def to_value(self) -> Value:
        out: dict[str, Value] = {"type": int(self.type)}
        if self.reason:
            out["reason"] = self.reason
        if self.target is not None:
            out["target"] = str(self.target)
        return out

    @classmethod
    def from_value(cls, value: Value) -> BusinessInfo:
        m = _mapping(value, "business", frozenset({"type", "reason", "target"}))
        target = m.get("target")
        if target is not None and not isinstance(target, str):
            raise InvalidValue("business target must be a document id text")
        return cls(
            type=m.get("type", 0),
            reason=m.get("reason", ""),
            target=DocumentId.parse(target) if target is not None else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The signed header of a document.

    Attributes:
        sender: the promulgating agency (edXML ``From``).
        recipients: the agencies it is addressed to (``To``), at least one, no repeats.
        number: the document number (``Code.CodeNumber``).
        notation: the notation, e.g. ``"VPCP-TTĐT"`` (``Code.CodeNotation``).
        promulgation_date: the date of promulgation; with sender, number and notation it
            forms the :attr:`document_id`.
        promulgation_place: e.g. ``"Hà Nội"``.
        document_type: numeric type and name.
        subject: the summary (trích yếu), required.
        content: optional longer text.
        signer: who signed on paper.
        due_date: when a response is due, if any.
        priority, sphere, page_amount, appendixes: edXML ``OtherInfo``.
        steering_type: directive, report, reference...
        response_for: documents this one answers.
        business: new / revoke / update / replace.
        classification: security classification, checked by the policy.
    """

    sender: Organization
    recipients: tuple[Organization, ...]
    number: int
    notation: str
    promulgation_date: _dt.date
    subject: str
    signer: SignerInfo
    promulgation_place: str = ""
    document_type: DocumentType = field(
        default_factory=lambda: DocumentType(code=1, name="Công văn")
    )
    content: str = ""
    due_date: _dt.date | None = None
    priority: Priority = Priority.NORMAL
    sphere: str = ""
    page_amount: int = 0
    appendixes: tuple[str, ...] = ()
    steering_type: SteeringType = SteeringType.NONE
    response_for: tuple[ResponseFor, ...] = ()
    business: BusinessInfo = field(default_factory=BusinessInfo)
    classification: Classification = Classification.PUBLIC

    def __post_init__(self) -> None:
        if not isinstance(self.sender, Organization):
            raise InvalidValue("sender must be an Organization")
        recipients = tuple(self.recipients)
        if not recipients:
            raise InvalidValue("a document needs at least one recipient")
        if len(recipients) > MAX_RECIPIENTS:
            raise InvalidValue(f"more than {MAX_RECIPIENTS} recipients")
        if not all(isinstance(r, Organization) for r in recipients):
            raise InvalidValue("recipients must be Organizations")
        codes = [r.code for r in recipients]
        if len(set(codes)) != len(codes):
            raise InvalidValue("a recipient is listed twice")
        object.__setattr__(self, "recipients", recipients)
        # DocumentId validates number, notation and date for us.
        DocumentId(self.sender.code, self.promulgation_date, self.number, self.notation)
        object.__setattr__(self, "notation", unicodedata.normalize("NFC", self.notation))
        object.__setattr__(
            self, "subject", text(self.subject, "subject", limit=MAX_TEXT, required=True)
        )
        object.__setattr__(self, "content", text(self.content, "content", limit=MAX_TEXT * 10))
        object.__setattr__(
            self, "promulgation_place", text(self.promulgation_place, "promulgation place")
        )
        object.__setattr__(self, "sphere", text(self.sphere, "sphere"))
        if not isinstance(self.signer, SignerInfo):
            raise InvalidValue("signer must be a SignerInfo")
        if not isinstance(self.document_type, DocumentType):
            raise InvalidValue("document type must be a DocumentType")
        if self.due_date is not None and (
            not isinstance(self.due_date, _dt.date) or isinstance(self.due_date, _dt.datetime)
        ):
            raise InvalidValue("due date must be a datetime.date")
        object.__setattr__(self, "priority", _enum(Priority, self.priority, "priority"))
        object.__setattr__(
            self, "steering_type", _enum(SteeringType, self.steering_type, "steering type")
        )
        object.__setattr__(
            self, "classification", _enum(Classification, self.classification, "classification")
        )
        _int(self.page_amount, "page amount", 0, 1_000_000)
        appendixes = tuple(text(a, "appendix name", required=True) for a in self.appendixes)
        if len(appendixes) > MAX_LIST:
            raise InvalidValue(f"more than {MAX_LIST} appendixes")
        object.__setattr__(self, "appendixes", appendixes)
        response_for = tuple(self.response_for)
        if len(response_for) > MAX_LIST or not all(
            isinstance(r, ResponseFor) for r in response_for
        ):
            raise InvalidValue("response-for must be at most 100 ResponseFor values")
        object.__setattr__(self, "response_for", response_for)
        if not isinstance(self.business, BusinessInfo):
            raise InvalidValue("business must be a BusinessInfo")

    @property
    def document_id(self) -> DocumentId:
        return DocumentId(self.sender.code, self.promulgation_date, self.number, self.notation)

    @property
    def recipient_codes(self) -> tuple[AgencyCode, ...]:
        return tuple(r.code for r in self.recipients)

    def to_value(self) -> Value:
        out: dict[str, Value] = {
            "from": self.sender.to_value(),
            "to": [r.to_value() for r in self.recipients],
            "number": self.number,
            "notation": self.notation,
            "promulgation_date": _date_value(self.promulgation_date),
            "subject": self.subject,
            "signer": self.signer.to_value(),
            "document_type": self.document_type.to_value(),
            "priority": int(self.priority),
            "steering_type": int(self.steering_type),
            "business": self.business.to_value(),
            "classification": int(self.classification),
        }
        if self.promulgation_place:
            out["promulgation_place"] = self.promulgation_place
        if self.content:
            out["content"] = self.content
        if self.due_date is not None:
            out["due_date"] = _date_value(self.due_date)
        if self.sphere:
            out["sphere"] = self.sphere
        if self.page_amount:
            out["page_amount"] = self.page_amount
        if self.appendixes:
            out["appendixes"] = list(self.appendixes)
        if self.response_for:
            out["response_for"] = [r.to_value() for r in self.response_for]
        return out

    _KEYS = frozenset(
        {
            "from", "to", "number", "notation", "promulgation_date", "subject", "signer",
            "document_type", "priority", "steering_type", "business", "classification",
            "promulgation_place", "content", "due_date", "sphere", "page_amount",
            "appendixes", "response_for",
        }
    )  # fmt: skip
    _REQUIRED = ("from", "to", "number", "notation", "promulgation_date", "subject", "signer")

    @classmethod
    def from_value(cls, value: Value) -> Envelope:
        """Rebuild from :meth:`to_value` output, validating everything.

        Raises:
            InvalidValue: a missing, unknown or invalid field (named in the message).
        """
        m = _mapping(value, "envelope", cls._KEYS, cls._REQUIRED)
        to = m["to"]
        if not isinstance(to, list):
            raise InvalidValue("envelope 'to' must be a list")
        appendixes = m.get("appendixes", [])
        response_for = m.get("response_for", [])
        if not isinstance(appendixes, list) or not isinstance(response_for, list):
            raise InvalidValue("appendixes and response_for must be lists")
        due = m.get("due_date")
        return cls(
            sender=Organization.from_value(m["from"]),
            recipients=tuple(Organization.from_value(r) for r in to[: MAX_RECIPIENTS + 1]),
            number=m["number"],
            notation=text(m["notation"], "notation", limit=100),
            promulgation_date=_parse_date(m["promulgation_date"], "promulgation date"),
            subject=m["subject"],
            signer=SignerInfo.from_value(m["signer"]),
            promulgation_place=m.get("promulgation_place", ""),
            document_type=DocumentType.from_value(m["document_type"])
            if "document_type" in m
            else DocumentType(code=1, name="Công văn"),
            content=m.get("content", ""),
            due_date=_parse_date(due, "due date") if due is not None else None,
            priority=m.get("priority", 0),
            sphere=m.get("sphere", ""),
            page_amount=m.get("page_amount", 0),
            appendixes=tuple(appendixes[: MAX_LIST + 1]),
            steering_type=m.get("steering_type", 0),
            response_for=tuple(ResponseFor.from_value(r) for r in response_for[: MAX_LIST + 1]),
            business=BusinessInfo.from_value(m["business"]) if "business" in m else BusinessInfo(),
            classification=m.get("classification", 0),
        )
