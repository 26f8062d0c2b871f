"""Registered HTTP tools: a ``tool`` step POSTs (or GETs) its JSON input to the tool's URL.

Every hop, redirects included, is checked before it is made: its host must be on the tool's allow-list (the URL's
own host when the list is empty), and its address must be public unless the tool sets ``allow_private``
(:func:`switchyard.netguard.resolve_pinned`: the name is resolved once and the connection pinned to the checked
address, so DNS cannot answer differently between the check and the call). The input is validated against the
tool's JSON schema first; an invalid input is not retried.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson

from ..config.workflows import ToolConfig
from ..netguard import UnsafeTarget, resolve_pinned

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class ToolError(Exception):
    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def check_input(name: str, tool: ToolConfig, value: Any) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(tool.input_schema).iter_errors(value), key=lambda e: e.path)
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "<input>"
        raise ToolError(f"tool {name!r}: the input does not match its schema at {where}: {e.message}")


async def call_tool(name: str, tool: ToolConfig, value: Any, seconds: float) -> Any:
    """Call the tool with ``value``; its JSON reply (or its text when it is not JSON)."""
    import httpx

    check_input(name, tool, value)
    allowed = {h.lower() for h in tool.allow_hosts} or {(urllib.parse.urlsplit(tool.url).hostname or "").lower()}
    url, method = tool.url, tool.method
    body: bytes | None = orjson.dumps(value) if method == "POST" else None
    params = value if method == "GET" and isinstance(value, dict) else None
    async with httpx.AsyncClient(timeout=min(seconds, tool.timeout_s), follow_redirects=False) as client:
        for _hop in range(tool.max_redirects + 1):
            host = (urllib.parse.urlsplit(url).hostname or "").lower()
            if host not in allowed:
                raise ToolError(f"tool {name!r}: host {host!r} is not on its allow-list")
            try:
                pinned = await resolve_pinned(url, tool.allow_private)
            except UnsafeTarget as e:
                raise ToolError(f"tool {name!r}: refused target: {e}") from None
            headers = {**tool.headers, "host": pinned.host_header}
            if body is not None:
                headers["content-type"] = "application/json"
            try:
                resp = await client.request(method, pinned.url_for(pinned.addresses[0]), content=body,
                                            params=params, headers=headers, extensions=pinned.extensions())
            except httpx.TimeoutException:
                raise ToolError(f"tool {name!r}: timed out", retryable=True) from None
            except httpx.HTTPError as e:
                raise ToolError(f"tool {name!r}: {type(e).__name__}", retryable=True) from None
            if resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                url = urllib.parse.urljoin(url, resp.headers["location"])
                if resp.status_code == 303:
                    method, body, params = "GET", None, None
                continue
            if len(resp.content) > tool.max_response_bytes:
                raise ToolError(f"tool {name!r}: the reply is larger than {tool.max_response_bytes} bytes")
            if resp.status_code >= 400:
                raise ToolError(f"tool {name!r}: HTTP {resp.status_code}", retryable=resp.status_code in RETRYABLE)
            try:
                return orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                return resp.text
        raise ToolError(f"tool {name!r}: more than {tool.max_redirects} redirects")
