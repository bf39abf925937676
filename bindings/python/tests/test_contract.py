"""The binding against the core's contract (include/herald.schema.json, generated from the
Rust types): every config key, authorizer field and status the schema has must exist here."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from herald import _types
from herald._auth import AuthDecision, AuthRequest
from herald._ffi import Status
from herald.errors import HeraldError, error_from_status

SCHEMA = Path(__file__).resolve().parents[3] / "include" / "herald.schema.json"


@pytest.fixture(scope="module")
def defs() -> Dict[str, Any]:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))["$defs"]


def def_name(prop: Dict[str, Any]) -> Optional[str]:
    """The definition a property refers to, directly or as an optional value."""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    for alt in prop.get("anyOf", []):
        name = def_name(alt)
        if name:
            return name
    return None


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


# The core's definition of each config table -> the binding's TypedDict.
CONFIG_TYPES = {
    "Config": _types.ServerConfig,
    "HistoryConfig": _types.HistoryConfig,
    "JobsConfig": _types.JobsConfig,
    "AiConfig": _types.AiConfig,
    "AuthConfig": _types.AuthConfig,
    "RateLimitConfig": _types.RateLimitConfig,
    "TlsConfig": _types.TlsConfig,
    "BrokerConfig": _types.BrokerConfig,
    "RedisConfig": _types.RedisConfig,
    "PresenceConfig": _types.PresenceConfig,
}


def test_every_config_key_is_typed(defs: Dict[str, Any]) -> None:
    missing = []
    pending = ["Config"]
    while pending:
        name = pending.pop()
        assert name in CONFIG_TYPES, f"the contract's config table {name} has no TypedDict"
        keys = set(CONFIG_TYPES[name].__annotations__)
        for key, prop in defs[name]["properties"].items():
            if key not in keys:
                missing.append(f"{name}.{key}")
            inner = def_name(prop)
            if inner:
                pending.append(inner)
    assert not missing, f"config keys missing from herald._types: {missing}"


def test_every_status_has_a_member_and_an_exception(defs: Dict[str, Any]) -> None:
    for status in defs["Status"]["oneOf"]:
        name = status["title"].removeprefix("HERALD_")
        assert Status[name] == status["const"], status
        if status["const"]:
            error = error_from_status(status["const"], "x")
            assert isinstance(error, HeraldError) and type(error) is not HeraldError, status


def test_the_authorizer_types_read_every_field(defs: Dict[str, Any]) -> None:
    request_fields = {f.name for f in dataclasses.fields(AuthRequest)}
    for variant in defs["AuthRequest"]["oneOf"]:
        for key in variant["properties"]:
            assert snake(key) in request_fields, f"AuthRequest lacks {key}"
    decision_fields = {f.name for f in dataclasses.fields(AuthDecision)}
    for key in defs["AuthDecision"]["properties"]:
        assert snake(key) in decision_fields, f"AuthDecision lacks {key}"
