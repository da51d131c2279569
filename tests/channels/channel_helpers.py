"""Helpers for the channel tests: read back what the bot sent to a mocked platform API."""
from __future__ import annotations

import json
from typing import Any, Dict, List

import aiohttp
from yarl import URL

# The action server runs on localhost: let those calls through aioresponses.
PASSTHROUGH = ["http://localhost", "http://127.0.0.1"]


def request_fields(call: Any) -> Dict[str, Any]:
    """The fields of one request recorded by aioresponses (aiogram sends a FormData, slack_sdk JSON)."""
    kwargs = call.kwargs
    if kwargs.get("json") is not None:
        return dict(kwargs["json"])
    data = kwargs.get("data")
    if isinstance(data, aiohttp.FormData):
        return {options["name"]: value for options, _headers, value in data._fields}
    if isinstance(data, dict):
        return dict(data)
    if isinstance(data, (str, bytes)):
        return json.loads(data)
    return {}


def recorded(mocked: Any, method: str, url: str) -> List[Dict[str, Any]]:
    return [request_fields(call) for call in mocked.requests.get((method, URL(url)), [])]
