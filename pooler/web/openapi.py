"""The OpenAPI description of the HTTP routes, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from pooler import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _ref("Error")
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_NONCE = {"type": "string", "pattern": "^[0-9]{1,20}$", "description": "u64 as a decimal string"}
_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "kale-pooler",
        "version": __version__,
        "description": "REST fallback for legacy miners, health and the dashboard stream. "
        "The primary miner interface is the WebSocket /ws/miner (docs/protocol.md).",
    },
    "paths": {
        "/miner/register": {
            "post": {
                "summary": "Register a miner: the Backend creates a custodial farmer bound to it",
                "description": "Open to anyone, unless the operator set ADMIN_TOKEN: then only a "
                "request with 'Authorization: Bearer <ADMIN_TOKEN>' registers (the operator hands the "
                "miner its token).",
                "security": [{}, {"admin": []}],
                "requestBody": {"content": {"application/json": {"schema": _ref("RegisterRequest")}}},
                "responses": {
                    "201": _json(_ref("Registered"), "registered; the token is shown only now"),
                    "400": _json(_ERR, "bad input"),
                    "401": _json(
                        _ERR, "ADMIN_TOKEN is set and no bearer token was sent (unauthorized, code 24)"
                    ),
                    "403": _json(_ERR, "ADMIN_TOKEN is set and the bearer token is another one (forbidden)"),
                    "503": _json(_ERR, "the Backend could not register a farmer"),
                },
            }
        },
        "/miner/work": {
            "get": {
                "summary": "A job (nonce range) for this miner's worker",
                "security": _BEARER,
                "parameters": [
                    {
                        "name": "worker",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 64},
                    }
                ],
                "responses": {
                    "200": _json(_ref("Job"), "a job"),
                    "400": _json(_ERR, "bad worker name"),
                    "401": _json(_ERR, "missing or bad token"),
                    "429": _json(_ERR, "over this miner's request rate"),
                    "503": _json(_ERR, "no block is open, or (a group) the job cannot be recorded now"),
                },
            }
        },
        "/miner/submit": {
            "post": {
                "summary": "Submit a share",
                "security": _BEARER,
                "requestBody": {"content": {"application/json": {"schema": _ref("Submit")}}},
                "responses": {
                    "200": _json(_ref("Accepted"), "accepted"),
                    "400": _json(_ref("Rejected"), "malformed, out-of-range, invalid-hash or low-zeros"),
                    "401": _json(_ref("Rejected"), "missing or bad token (code 24)"),
                    "409": _json(_ref("Rejected"), "duplicate"),
                    "410": _json(_ref("Rejected"), "stale job"),
                    "413": _json(_ref("Rejected"), "body too large (code 29)"),
                    "429": _json(_ref("Rejected"), "over this miner's request rate (code 28)"),
                    "503": _json(
                        _ref("Rejected"), "the pool cannot record or check shares right now (code 30); retry"
                    ),
                },
            }
        },
        "/miner/stats": {
            "get": {
                "summary": "This miner's figures",
                "security": _BEARER,
                "responses": {
                    "200": _json(_ref("Stats"), "stats"),
                    "401": _json(_ERR, "missing or bad token"),
                    "429": _json(_ERR, "over this miner's request rate"),
                },
            }
        },
        "/miner/leave": {
            "post": {
                "summary": "Leave: token revoked, sockets closed; accepted work is still submitted",
                "security": _BEARER,
                "responses": {
                    "200": _json(_ref("Left"), "left"),
                    "401": _json(_ERR, "missing or bad token"),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Chain RPC and Backend state, current block, miners online",
                "responses": {
                    "200": _json(_ref("Health"), "serving"),
                    "503": _json(_ref("Health"), "cannot serve"),
                },
            }
        },
        "/health/live": {
            "get": {"summary": "The process is up", "responses": {"200": {"description": "up"}}}
        },
        "/health/ready": {
            "get": {
                "summary": "Ready: RPC reachable, Backend healthy, store open",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition; OpenMetrics when asked for)",
                "responses": {"200": {"description": "the metrics", "content": {"text/plain": {}}}},
            }
        },
        "/events": {
            "get": {
                "summary": "Dashboard event stream (Server-Sent Events); also WebSocket /ws/events",
                "responses": {"200": {"description": "text/event-stream of event objects (docs/events.md)"}},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a miner's token"},
            "admin": {"type": "http", "scheme": "bearer", "description": "the operator's ADMIN_TOKEN"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message", "timestamp"],
                "properties": {
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "timestamp": {"type": "integer"},
                    "code": {"type": "integer"},
                },
            },
            "RegisterRequest": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 64},
                    "stakePercentage": {"type": "number", "minimum": 0, "maximum": 1},
                    "metadata": {"type": "object"},
                },
            },
            "Registered": {
                "type": "object",
                "required": ["minerId", "token", "farmerId", "farmer"],
                "properties": {
                    "minerId": {"type": "string"},
                    "token": {"type": "string"},
                    "farmerId": {"type": "string"},
                    "farmer": {"type": "string"},
                },
            },
            "Job": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["job"]},
                    "job": {"type": "string"},
                    "block": {"type": "integer"},
                    "entropy": _HEX32,
                    "farmer": {"type": "string"},
                    "nonceStart": _NONCE,
                    "nonceEnd": _NONCE,
                    "shareZeros": {"type": "integer"},
                    "clean": {"type": "boolean"},
                    "workAt": {"type": "integer"},
                    "blockEndsAt": {"type": "integer"},
                },
            },
            "Submit": {
                "type": "object",
                "required": ["job", "nonce"],
                "properties": {"job": {"type": "string"}, "nonce": _NONCE, "hash": _HEX32},
            },
            "Accepted": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["accepted"]},
                    "job": {"type": "string"},
                    "nonce": _NONCE,
                    "zeros": {"type": "integer"},
                    "best": {"type": "boolean"},
                },
            },
            "Rejected": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["rejected"]},
                    "job": {"type": "string", "nullable": True},
                    "nonce": {"type": "string", "nullable": True},
                    "code": {"type": "integer"},
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
            "Stats": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["stats"]},
                    "minerId": {"type": "string"},
                    "farmerId": {"type": "string"},
                    "block": {"type": "integer", "nullable": True},
                    "workers": {"type": "integer"},
                    "hashrate": {"type": "number", "description": "H/s, estimated from shares"},
                    "accepted": {"type": "integer"},
                    "rejected": {"type": "integer"},
                    "stale": {"type": "integer"},
                    "bestZeros": {"type": "integer", "nullable": True},
                    "shareZeros": {"type": "integer", "nullable": True},
                    "rewards": {"type": "string", "description": "KALE stroops harvested, decimal string"},
                },
            },
            "Health": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "the pool's display name (POOLER_NAME)"},
                    "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
                    "checks": {
                        "type": "object",
                        "properties": {
                            "rpc": {"type": "string", "enum": ["ok", "down"]},
                            "backend": {"type": "string", "enum": ["ok", "down"]},
                            "store": {"type": "string", "enum": ["ok", "down"]},
                        },
                    },
                    "block": {"type": "integer", "nullable": True},
                    "phase": {"type": "string"},
                    "minersOnline": {"type": "integer"},
                    "workers": {"type": "integer", "description": "open miner WebSockets"},
                    "uptime": {"type": "number"},
                    "timestamp": {"type": "integer"},
                },
            },
            "Left": {
                "type": "object",
                "properties": {
                    "minerId": {"type": "string"},
                    "left": {"type": "boolean"},
                    "timestamp": {"type": "integer"},
                },
            },
        },
    },
}
