"""The HTTP API's OpenAPI 3.1 description, served at ``/openapi.json``.

Written out rather than generated, so that it states the contract (error shape, limits,
long-polling) and not whatever the code happens to do; ``tests/daemon`` checks that every
route the application serves is described here with the same methods.
"""

from __future__ import annotations

from typing import Any, Final

from .config import MAX_SECONDS

__all__ = ["ROUTES", "openapi_document"]

_ERROR_CODES: Final = (
    "unauthorized, malformed_json, malformed_body, missing_field, invalid_field, "
    "unknown_field, unknown_agency, invalid_value, too_large, unsupported_media_type, "
    "not_found, method_not_allowed, status_not_allowed, policy_refused, not_configured, "
    "storage_full, store_unavailable, internal"
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS: Final = {
    "4XX": _json(_ref("Error"), "The request was refused; nothing was stored"),
    "5XX": _json(_ref("Error"), "The node could not complete the request"),
}
_ROOT: Final = {
    "name": "root",
    "in": "path",
    "required": True,
    "description": "the document version's root CID (base32 CIDv1)",
    "schema": {"type": "string"},
}
_NAME: Final = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "the file's name in the document",
    "schema": {"type": "string"},
}
_PAGE: Final = [
    {
        "name": "after",
        "in": "query",
        "description": "the `next` cursor of the previous page",
        "schema": {"type": "string"},
    },
    {
        "name": "limit",
        "in": "query",
        "description": "items per page (1..500, default 50)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
    },
]
_WAIT: Final = {
    "name": "wait",
    "in": "query",
    "description": "seconds to wait for something new before answering (0..60, default 0)",
    "schema": {"type": "number", "minimum": 0, "maximum": 60},
}

ROUTES: Final[dict[str, dict[str, dict[str, Any]]]] = {
    "/api/v1/health": {
        "get": {
            "summary": "Health: status, issues (stale peer list or revocation lists, expiring "
            "certificate), counters",
            "responses": {"200": _json(_ref("Health"))},
        }
    },
    "/api/v1/peers": {
        "get": {
            "summary": "Peers from the directory and live sessions",
            "responses": {"200": _json({"type": "array", "items": _ref("Peer")})},
        }
    },
    "/api/v1/events": {
        "get": {
            "summary": "Recent events after a number (long-poll with `wait`)",
            "parameters": [
                {
                    "name": "after",
                    "in": "query",
                    "description": "the last event number seen (default 0)",
                    "schema": {"type": "integer", "minimum": 0},
                },
                _WAIT,
            ],
            "responses": {"200": _json(_ref("Events"))},
        }
    },
    "/api/v1/outbox": {
        "get": {
            "summary": "Sent documents, newest first, with each recipient's delivery state",
            "parameters": _PAGE,
            "responses": {"200": _json(_ref("Page"))},
        },
        "post": {
            "summary": "Submit a document: metadata JSON and files. It is checked whole, "
            "then stored, signed by the configured officials and queued for each recipient",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["metadata"],
                            "properties": {
                                "metadata": _ref("Metadata"),
                                "file": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                    "description": "attachments: each part's filename is "
                                    "its name in the document, its Content-Type its media "
                                    "type",
                                },
                            },
                        }
                    },
                    "application/json": {"schema": _ref("Metadata")},
                },
            },
            "responses": {"202": _json(_ref("Submitted"), "Queued for delivery")},
        },
    },
    "/api/v1/outbox/{root}": {
        "get": {
            "summary": "A sent document: envelope, files, per-recipient delivery with "
            "history, receipt and status trail",
            "parameters": [_ROOT],
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/api/v1/outbox/{root}/receipts": {
        "get": {
            "summary": "The verified receipts of a sent document (with evidence)",
            "parameters": [_ROOT],
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/api/v1/outbox/{root}/status": {
        "get": {
            "summary": "Every recipient's status trail of a sent document (with evidence)",
            "parameters": [_ROOT],
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/api/v1/outbox/{root}/files/{name}": {
        "get": {
            "summary": "A file of a sent document",
            "parameters": [_ROOT, _NAME],
            "responses": {"200": {"description": "the file's bytes"}},
        }
    },
    "/api/v1/receipts": {
        "get": {
            "summary": "Receipts of sent documents, newest document first",
            "parameters": _PAGE,
            "responses": {"200": _json(_ref("Page"))},
        }
    },
    "/api/v1/inbox": {
        "get": {
            "summary": "Received documents: `state=stored` (default; not yet acknowledged, "
            "oldest first) or `state=all` (newest first)",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["stored", "all"]},
                },
                *_PAGE,
                _WAIT,
            ],
            "responses": {"200": _json(_ref("Page"))},
        }
    },
    "/api/v1/inbox/{root}": {
        "get": {
            "summary": "A received document: envelope, files, our receipt, our status trail "
            "and the codes that may follow",
            "parameters": [_ROOT],
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/api/v1/inbox/{root}/files/{name}": {
        "get": {
            "summary": "A file of a received document, verified block by block",
            "parameters": [_ROOT, _NAME],
            "responses": {"200": {"description": "the file's bytes"}},
        }
    },
    "/api/v1/inbox/{root}/ack": {
        "post": {
            "summary": "Acknowledge a received document: the software has taken it",
            "parameters": [_ROOT],
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/api/v1/inbox/{root}/status": {
        "get": {
            "summary": "Our status trail of a received document",
            "parameters": [_ROOT],
            "responses": {"200": _json({"type": "object"})},
        },
        "post": {
            "summary": "Report a processing status (03 accepted, 04 assigned, 05 processing, "
            "06 completed, 02 rejected) to the sender, signed",
            "parameters": [_ROOT],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("StatusPost")}},
            },
            "responses": {
                "200": _json({"type": "object"}),
                "409": _json(_ref("Error"), "The code may not follow the last one reported"),
            },
        },
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text format)",
            "responses": {"200": {"description": "text/plain; version=0.0.4"}},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This description (no token needed)",
            "security": [],
            "responses": {"200": _json({"type": "object"})},
        }
    },
    "/dashboard": {
        "get": {
            "summary": "The operator's dashboard page (no token needed to load it; its script "
            "reads /api/v1/dashboard and /api/v1/events with the token)",
            "security": [],
            "responses": {"200": {"description": "text/html"}},
        }
    },
    "/dashboard/assets/{name}": {
        "get": {
            "summary": "The dashboard's static files: dashboard.js, dashboard.css, icon.svg "
            "(no token needed)",
            "security": [],
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "the file's name",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {"200": {"description": "text/javascript, text/css or image/svg+xml"}},
        }
    },
    "/api/v1/dashboard": {
        "get": {
            "summary": "What the dashboard shows, in one read: health, peers, the newest sent "
            "documents with each recipient's delivery state and status trail, the newest "
            "received documents with the statuses reported on them, agency names, status "
            "code meanings, and the event feed's position",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "description": "documents each way (1..100, default 25)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                }
            ],
            "responses": {"200": _json(_ref("Dashboard"))},
        }
    },
}

_SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string", "description": f"one of: {_ERROR_CODES}"},
                    "message": {"type": "string"},
                    "field": {
                        "type": ["string", "null"],
                        "description": "the field concerned, e.g. to[1], if any",
                    },
                },
            }
        },
    },
    "Metadata": {
        "type": "object",
        "description": "The envelope (edXML header). `from` defaults to this node's agency; "
        "recipients may be agency codes or {code, name, ...} objects; `deadline` (seconds) "
        "overrides the configured delivery deadline.",
        "required": ["to", "number", "notation", "promulgation_date", "subject", "signer"],
        "properties": {
            "to": {"type": "array", "items": {"type": ["string", "object"]}, "minItems": 1},
            "number": {"type": "integer"},
            "notation": {"type": "string"},
            "promulgation_date": {"type": "string", "format": "date"},
            "subject": {"type": "string"},
            "signer": {
                "type": "object",
                "required": ["full_name"],
                "properties": {
                    "full_name": {"type": "string"},
                    "position": {"type": "string"},
                    "competence": {"type": "string"},
                },
            },
            "promulgation_place": {"type": "string"},
            "document_type": {
                "type": "object",
                "properties": {"code": {"type": "integer"}, "name": {"type": "string"}},
            },
            "content": {"type": "string"},
            "due_date": {"type": "string", "format": "date"},
            "priority": {"type": "integer", "minimum": 0, "maximum": 4},
            "sphere": {"type": "string"},
            "page_amount": {"type": "integer"},
            "appendixes": {"type": "array", "items": {"type": "string"}},
            "steering_type": {
                "type": "integer",
                "description": "0 none, 1 directive, 2 report, 3 reference",
            },
            "response_for": {
                "type": "array",
                "items": {"type": "string"},
                "description": "document ids this one answers",
            },
            "business": {"type": "object"},
            "classification": {"type": "integer", "minimum": 0, "maximum": 4},
            "deadline": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS},
        },
    },
    "Submitted": {
        "type": "object",
        "properties": {
            "root": {"type": "string"},
            "document_id": {"type": "string"},
            "recipients": {"type": "array", "items": {"type": "string"}},
            "size": {"type": "integer"},
            "resubmitted": {
                "type": "boolean",
                "description": "the same document was submitted before (nothing queued twice)",
            },
        },
    },
    "Page": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "next": {"type": ["string", "null"], "description": "cursor of the next page"},
        },
    },
    "Dashboard": {
        "type": "object",
        "required": ["events", "now", "node", "peers", "outgoing", "incoming", "names"],
        "properties": {
            "events": {
                "type": "object",
                "description": "the feed's boot and last number when the snapshot began",
            },
            "now": {"type": ["integer", "null"], "description": "the node's clock, ms"},
            "node": _ref("Health"),
            "peers": {"type": "array", "items": _ref("Peer")},
            "outgoing": {
                "type": "array",
                "description": "sent documents, newest first; each recipient with state, "
                "attempts, next_at, deadline, last_error, receipt_at, history and status "
                "({complete, reports})",
                "items": {"type": "object"},
            },
            "incoming": {
                "type": "array",
                "description": "received documents, newest first, with state and status",
                "items": {"type": "object"},
            },
            "names": {
                "type": "object",
                "description": "agency code -> name, as learnt from the documents",
                "additionalProperties": {"type": "string"},
            },
            "status_codes": {
                "type": "object",
                "description": "code -> {short, en, vi}: a name, English and Vietnamese meaning",
            },
        },
    },
    "Events": {
        "type": "object",
        "properties": {
            "boot": {"type": "string", "description": "changes when the daemon restarts"},
            "last": {"type": "integer"},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "description": "kinds: document.submitted, delivery, receipt, "
                    "delivery.failed, document.received, document.acked, status.posted, "
                    "status.received",
                    "properties": {
                        "seq": {"type": "integer"},
                        "at": {"type": "integer", "description": "ms since the epoch"},
                        "kind": {"type": "string"},
                    },
                },
            },
        },
    },
    "StatusPost": {
        "type": "object",
        "required": ["code"],
        "properties": {
            "code": {
                "type": "string",
                "enum": ["01", "02", "03", "04", "05", "06", "13", "15", "16"],
            },
            "staff": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "department": {"type": "string"},
                    "contact": {"type": "string"},
                },
            },
            "description": {"type": "string"},
        },
    },
    "Peer": {
        "type": "object",
        "properties": {
            "agency": {"type": "string"},
            "peer": {"type": "string"},
            "addrs": {"type": "array", "items": {"type": "string"}},
            "listed": {"type": "boolean"},
            "connected": {"type": "boolean"},
            "bytes_sent": {"type": "integer"},
            "bytes_received": {"type": "integer"},
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "issues": {"type": "array", "items": {"type": "string"}},
            "agency": {"type": "string"},
            "peer": {"type": "string"},
            "directory": {
                "type": "object",
                "properties": {
                    "age_seconds": {"type": "number"},
                    "stale": {"type": "boolean"},
                },
            },
            "runtime": {"type": "object"},
        },
    },
}


def openapi_document(*, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI document for a node (``title`` names it)."""
    paths: dict[str, Any] = {}
    for path, methods in ROUTES.items():
        paths[path] = {
            method: {**spec, "responses": {**spec["responses"], **_ERRORS}}
            for method, spec in methods.items()
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Local API of a p2pdoc node for document-management software. "
            "Every endpoint except /openapi.json and /dashboard needs "
            "`Authorization: Bearer <token>` (the token file named by api.token_file). "
            'Errors are JSON: {"error": {"code", "message", "field"}}. Times are '
            "milliseconds since the Unix epoch.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "paths": paths,
    }
