"""The OpenAPI description of the HTTP routes, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from pooler import __version__
from pooler.stats.views import MINER_SORTS


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
                    "429": _json(
                        _ERR,
                        "too many registrations from this address or in total this hour, or this address"
                        " sent too many wrong ADMIN_TOKENs (rate-limited, code 28; Retry-After header,"
                        " and retryAfter in seconds for a registration limit)",
                    ),
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
                    "429": _json(
                        _ERR,
                        "over this miner's request rate, or this address is backed off after wrong tokens",
                    ),
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
                    "429": _json(
                        _ref("Rejected"),
                        "over this miner's request rate, or this address is backed off after wrong tokens"
                        " (code 28; Retry-After)",
                    ),
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
                    "429": _json(
                        _ERR,
                        "over this miner's request rate, or this address is backed off after wrong tokens",
                    ),
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
                    "hashrate": {
                        "type": "number",
                        "description": "effective H/s over the trailing 10 min (shares and exhausted ranges)",
                    },
                    "accepted": {"type": "integer"},
                    "rejected": {"type": "integer"},
                    "stale": {"type": "integer"},
                    "bestZeros": {"type": "integer", "nullable": True},
                    "shareZeros": {"type": "integer", "nullable": True},
                    "rewards": {"type": "string", "description": "KALE stroops harvested, decimal string"},
                    "reportedHashrate": {
                        "type": "number",
                        "nullable": True,
                        "description": "H/s its online workers say they compute (hello/report): display only",
                    },
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


# ---------------------------------------------------------------- the stats API (docs/stats.md)

_RANGE = {
    "name": "range",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["1h", "24h", "7d", "30d"], "default": "24h"},
    "description": "1h and 24h: 1-minute buckets; 7d and 30d: 1-hour buckets",
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
}
_STROOPS = {"type": "string", "pattern": "^[0-9]+$", "description": "KALE stroops, decimal string"}
_REJECTED = {"type": "object", "additionalProperties": {"type": "integer"}, "description": "reason -> count"}
_NOW = {
    "hashrate": {"type": "number", "description": "H/s: work of accepted shares over the last 10 minutes"},
    "accepted24h": {"type": "integer"},
    "stale24h": {"type": "integer"},
    "rejected24h": _REJECTED,
}


def _get(summary: str, schema: str, params: list[dict[str, Any]], not_found: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": _json(_ref(schema), "the answer"),
        "400": _json(_ERR, "a bad query parameter: the message names it and what is expected"),
    }
    if not_found:
        responses["404"] = _json(_ERR, "not in the history")
    return {"get": {"summary": summary, "tags": ["stats"], "parameters": params, "responses": responses}}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


SPEC["paths"].update(
    {
        "/stats/pool": _get("The pool now and its history", "StatsPool", [_RANGE]),
        "/stats/blocks": _get(
            "Blocks, newest first (paged by ?before=<the previous page's nextBefore>)",
            "StatsBlocks",
            [_LIMIT, {"name": "before", "in": "query", "required": False, "schema": {"type": "integer"}}],
        ),
        "/stats/blocks/{block}": _get("One block", "StatsBlock", [_path("block")], not_found=True),
        "/stats/miners": _get(
            "Miners (paged, sortable)",
            "StatsMiners",
            [
                _LIMIT,
                {
                    "name": "offset",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "sort",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": list(MINER_SORTS)},
                    "description": "hashrate (10 min), accepted / stale / rejected (24 h counts),"
                    " stalePct / invalidPct (24 h, of all answers), workers (with history),"
                    " lastShare (minute resolution), minerId",
                },
                {
                    "name": "order",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["desc", "asc"]},
                },
            ],
        ),
        "/stats/miners/{miner_id}": _get(
            "One miner: its workers and history", "StatsMiner", [_path("miner_id"), _RANGE], not_found=True
        ),
        "/stats/farmers": _get("Farmers and their rewards", "StatsFarmers", []),
        "/stats/farmers/{farmer_id}": _get(
            "One farmer: rewards per block, newest first",
            "StatsFarmer",
            [_path("farmer_id"), _LIMIT],
            not_found=True,
        ),
    }
)

_BUCKET_PROPS: dict[str, Any] = {
    "start": {"type": "integer", "description": "unix seconds"},
    "width": {"type": "integer", "description": "seconds: 60 or 3600"},
    "accepted": {"type": "integer"},
    "stale": {"type": "integer"},
    "rejected": _REJECTED,
    "work": {"type": "string", "description": "sum of 16**shareZeros over accepted shares"},
    "hashrate": {"type": "number", "description": "work / width"},
}
_BUCKET = {"type": "object", "properties": _BUCKET_PROPS}
_MINER_PROPS: dict[str, Any] = {"minerId": {"type": "string"}, "workers": {"type": "integer"}, **_NOW}
_MINER_ROW = {"type": "object", "required": ["minerId"], "properties": _MINER_PROPS}
_FARMER_OF_BLOCK = {
    "type": "object",
    "properties": {
        "farmerId": {"type": "string"},
        "planted": {"type": "boolean"},
        "bestZeros": {"type": "integer", "nullable": True},
        "gapSeconds": {
            "type": "number",
            "nullable": True,
            "description": "block timestamp to the best's find",
        },
        "worked": {"type": "boolean", "nullable": True},
        "workZeros": {"type": "integer", "nullable": True},
        "reward": {**_STROOPS, "nullable": True},
        "error": {"type": "string"},
    },
}
SPEC["components"]["schemas"].update(
    {
        "StatsBucket": _BUCKET,
        "StatsPoolBucket": {
            "type": "object",
            "properties": {
                **_BUCKET_PROPS,
                "minersOnline": {
                    "type": "integer",
                    "description": "the most miners online sampled in the bucket (0: none sampled)",
                },
                "workersOnline": {
                    "type": "integer",
                    "description": "the most workers online sampled in the bucket (0: none sampled)",
                },
            },
        },
        "StatsPool": {
            "type": "object",
            "properties": {
                **_NOW,
                "miners": {"type": "integer"},
                "workers": {"type": "integer"},
                "block": {"type": "integer", "nullable": True},
                "range": {"type": "string"},
                "history": {"type": "array", "items": _ref("StatsPoolBucket")},
            },
        },
        "StatsBlock": {
            "type": "object",
            "required": ["block"],
            "properties": {
                "block": {"type": "integer"},
                "timestamp": {"type": "integer"},
                "planted": {"type": "integer", "description": "farmers planted"},
                "staked": _STROOPS,
                "workAt": {
                    "type": "number",
                    "nullable": True,
                    "description": "unix seconds of the /work answer",
                },
                "workOk": {"type": "boolean", "nullable": True},
                "workError": {"type": "string"},
                "harvested": {**_STROOPS, "nullable": True},
                "farmers": {"type": "array", "items": _FARMER_OF_BLOCK},
                "chain": {
                    "type": "object",
                    "nullable": True,
                    "description": "Block(N) on chain as last read (null: not read): the score's"
                    " bounds (period N-1's min/max zeros, gap in ledgers, stake in stroops) and its"
                    " stake and score totals",
                    "properties": {
                        "minZeros": {"type": "integer"},
                        "maxZeros": {"type": "integer"},
                        "minGap": {"type": "integer"},
                        "maxGap": {"type": "integer"},
                        "minStake": _STROOPS,
                        "maxStake": _STROOPS,
                        "stakedTotal": _STROOPS,
                        "normalizedTotal": {"type": "string", "description": "decimal string"},
                    },
                },
            },
        },
        "StatsBlocks": {
            "type": "object",
            "properties": {
                "blocks": {"type": "array", "items": _ref("StatsBlock")},
                "nextBefore": {"type": "integer", "nullable": True},
            },
        },
        "StatsMinerRow": _MINER_ROW,
        "StatsMiners": {
            "type": "object",
            "properties": {
                "total": {"type": "integer"},
                "offset": {"type": "integer"},
                "miners": {"type": "array", "items": _ref("StatsMinerRow")},
            },
        },
        "StatsMiner": {
            "type": "object",
            "properties": {
                **_MINER_PROPS,
                "workerList": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"worker": {"type": "string"}, **_NOW}},
                },
                "range": {"type": "string"},
                "history": {"type": "array", "items": _ref("StatsBucket")},
            },
        },
        "StatsFarmers": {
            "type": "object",
            "properties": {
                "farmers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "farmerId": {"type": "string"},
                            "blocks": {"type": "integer", "description": "blocks with a harvested reward"},
                            "rewards": _STROOPS,
                        },
                    },
                }
            },
        },
        "StatsFarmer": {
            "type": "object",
            "properties": {
                "farmerId": {"type": "string"},
                "rewards": _STROOPS,
                "blocks": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"block": {"type": "integer"}, "reward": _STROOPS},
                    },
                },
            },
        },
    }
)

# ---------------------------------------------------------------- /stats/live (docs/stats.md, "Live")

_NULL_NUM = {"type": "number", "nullable": True}
_LAST_SHARE = {
    "type": "integer",
    "nullable": True,
    "description": "unix seconds: start of the newest 1-minute bucket with a share (last 24 h)",
}
_LIVE_MINER = {
    "minerId": {"type": "string"},
    "farmerId": {"type": "string", "nullable": True},
    "address": {"type": "string", "nullable": True, "description": "the farmer's G... address"},
    "name": {"type": "string", "nullable": True, "description": "the name given at registration"},
    "workersOnline": {"type": "integer"},
    "hashrate": {"type": "number", "description": "H/s, effective (the core's estimator)"},
    "reportedHashrate": {**_NULL_NUM, "description": "H/s the miner says (display only)"},
    "bestZeros": {"type": "integer", "nullable": True, "description": "its best in the open block"},
    "lastShareAt": _LAST_SHARE,
}
SPEC["paths"].update(
    {
        "/stats/live": _get(
            "The running core now: the open block, who is online, farmers' best zeros and projections",
            "StatsLive",
            [{**_LIMIT, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
        ),
        "/stats/live/miners": _get(
            "Live figures of up to 100 miners (?ids=a,b,c)",
            "StatsLiveMiners",
            [{"name": "ids", "in": "query", "required": True, "schema": {"type": "string"}}],
        ),
        "/stats/live/miners/{miner_id}": _get(
            "One miner's live figures and its workers, online and offline",
            "StatsLiveMiner",
            [_path("miner_id")],
            not_found=True,
        ),
    }
)
SPEC["components"]["schemas"].update(
    {
        "StatsLive": {
            "type": "object",
            "properties": {
                "block": {"type": "integer", "nullable": True},
                "phase": {"type": "string"},
                "entropy": {"type": "string", "nullable": True},
                "timestamp": {
                    "type": "integer",
                    "nullable": True,
                    "description": "the block's, unix seconds",
                },
                "workAt": {"type": "integer", "nullable": True, "description": "unix ms"},
                "blockEndsAt": {"type": "integer", "nullable": True, "description": "unix ms"},
                "paused": {"type": "boolean"},
                "chainOk": {"type": "boolean"},
                "miners": {"type": "integer", "description": "miners online"},
                "workers": {"type": "integer", "description": "workers online"},
                "hashrate": {"type": "number", "description": "H/s, effective: the sum of the workers'"},
                "reportedHashrate": _NULL_NUM,
                "accepted": {"type": "integer", "description": "open block"},
                "rejected": {"type": "integer", "description": "open block"},
                "projectedReward": {**_STROOPS, "nullable": True},
                "chainMinZeros": {
                    "type": "integer",
                    "nullable": True,
                    "description": "Block(N).min_zeros on chain: the previous period's lowest zeros",
                },
                "chainMaxZeros": {"type": "integer", "nullable": True, "description": "Block(N).max_zeros"},
                "farmers": {
                    "type": "integer",
                    "description": "farmers known (farmerList holds the first `limit`)",
                },
                "farmerList": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "farmerId": {"type": "string"},
                            "address": {"type": "string"},
                            "names": {"type": "array", "items": {"type": "string"}},
                            "miners": {"type": "integer"},
                            "workers": {"type": "integer", "description": "online"},
                            "hashrate": {"type": "number"},
                            "bestZeros": {"type": "integer", "nullable": True},
                            "projectedReward": {**_STROOPS, "nullable": True},
                            "rewards": _STROOPS,
                        },
                    },
                },
            },
        },
        "StatsLiveMiners": {
            "type": "object",
            "properties": {
                "miners": {"type": "array", "items": {"type": "object", "properties": _LIVE_MINER}}
            },
        },
        "StatsLiveMiner": {
            "type": "object",
            "properties": {
                **_LIVE_MINER,
                "workerList": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "worker": {"type": "string"},
                            "online": {"type": "boolean"},
                            "transport": {"type": "string", "enum": ["websocket", "rest"]},
                            "agent": {"type": "string", "nullable": True},
                            "shareZeros": {"type": "integer"},
                            "hashrate": {"type": "number"},
                            "reportedHashrate": _NULL_NUM,
                            "confident": {"type": "boolean"},
                            "accepted": {"type": "integer"},
                            "rejected": {"type": "integer"},
                            "lastShareAt": _LAST_SHARE,
                        },
                    },
                },
            },
        },
    }
)
