"""Reading the Backend's replies: the lenient accessors the cycle interprets answers with."""

from __future__ import annotations

from collections.abc import Mapping


def as_int(value: object) -> int | None:
    """An integer from a JSON number or a decimal string (stroops travel as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


def int_field(response: Mapping[str, object], key: str) -> int | None:
    return as_int(response.get(key))


def results(response: Mapping[str, object]) -> dict[str, Mapping[str, object]] | None:
    """``results`` as farmer id -> item when the Backend lists per-farmer outcomes."""
    items = response.get("results")
    if not isinstance(items, list):
        return None
    out: dict[str, Mapping[str, object]] = {}
    for item in items:
        if isinstance(item, Mapping):
            fid = item.get("farmerId")
            if isinstance(fid, str):
                out[fid] = item
    return out


def already_planted(item: Mapping[str, object]) -> bool:
    """A per-farmer plant refusal that means "planted already" (contract error #8, PailExists).

    A repeated late plant meets it for farmers the earlier one planted: they are planted.
    """
    code = item.get("errorCode")
    return code in (8, "8") or "PailExists" in str(item.get("error", ""))


def item_error(item: Mapping[str, object]) -> str:
    for key in ("error", "message", "reason"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return "refused by the Backend"
