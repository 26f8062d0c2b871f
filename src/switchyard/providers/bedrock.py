"""The ``bedrock`` provider type: Amazon Bedrock's Converse and ConverseStream APIs, signed with SigV4.

Wire format: botocore's bundled ``bedrock-runtime`` service model (operations ``Converse``, ``POST
/model/{modelId}/converse``, and ``ConverseStream``, ``POST /model/{modelId}/converse-stream``, whose reply is an
AWS event stream). Error replies are ``{"message": ...}`` with the error's name in the ``x-amzn-errortype`` header.

botocore does the AWS parts: the standard credential chain (explicit keys from the config, else the profile,
environment, SSO, container and instance credentials, refreshed as they expire), SigV4 signing, and event-stream
frame decoding. It is imported when a bedrock provider is built, never by the gateway's core. Requests go out
through the provider base (``http_provider.HTTPProvider``) like every other provider's, over aiohttp
(``http.AiohttpTransport``), which sends the signed, percent-encoded URL exactly as it was signed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from ..config import BedrockProviderConfig
from ..errors import UpstreamError, is_retryable_status
from ..messages import ChatRequest, ChatResponse, Chunk
from . import bedrock_wire
from .base import Target
from .eventstream import EventStreamDecoder, Frame, FrameError
from .http import aiohttp_transport
from .http_provider import HTTPProvider, status_error
from .transport import TRANSPORT_ERRORS, Transport

log = logging.getLogger("switchyard.providers.bedrock")

SIGNING_NAME = "bedrock"  # the service model's signingName (its endpoint prefix is bedrock-runtime)
_CREDENTIALS_RETRY_SECONDS = 30.0  # how long a failed look-up of the credential chain is remembered

# ConverseStream's modelled exception events: (HTTP status they stand for, retryable)
_STREAM_EXCEPTIONS: dict[str, tuple[int, bool]] = {
    "throttlingException": (429, True),
    "serviceUnavailableException": (503, True),
    "internalServerException": (500, True),
    "modelStreamErrorException": (424, True),
    "validationException": (400, False),
}
# Errors that Bedrock sends with a 4xx status although the caller is not at fault: the model itself failed.
_MODEL_FAILURES = frozenset({"ModelErrorException", "ModelStreamErrorException"})


def _botocore(provider: str) -> Any:
    try:
        import botocore.auth  # type: ignore[import-untyped, unused-ignore]
        import botocore.awsrequest  # type: ignore[import-untyped, unused-ignore]
        import botocore.credentials  # type: ignore[import-untyped, unused-ignore]
        import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]
        import botocore.session  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise ValueError(f"providers.{provider}: the bedrock provider needs botocore; "
                         "install it with: pip install 'switchyard[bedrock]'") from None
    return botocore


class BedrockProvider(HTTPProvider):
    type = "bedrock"
    wire = bedrock_wire.WIRE_BEDROCK_CONVERSE

    def __init__(self, name: str, config: BedrockProviderConfig, transport: Transport | None = None) -> None:
        super().__init__(name, config, transport)
        self.config: BedrockProviderConfig = config
        self._aws = _botocore(name)
        try:
            self._session: Any = self._aws.session.Session(profile=config.profile)
            region = config.region or os.environ.get("AWS_REGION") or self._session.get_config_variable("region")
        except self._aws.exceptions.BotoCoreError as e:
            raise ValueError(f"providers.{name}: {e}") from None
        if not region:
            raise ValueError(f"providers.{name}.region: no AWS region is set here, in AWS_REGION or "
                             "AWS_DEFAULT_REGION, or in the AWS config")
        self.region: str = region
        self.endpoint = (config.endpoint_url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
        if bool(config.access_key_id) != bool(config.secret_access_key) or (
                config.session_token and not config.access_key_id):
            raise ValueError(f"providers.{name}: set both access_key_id and secret_access_key (and session_token "
                             "with them, for temporary credentials), or none of them")
        self._credentials: Any = None
        if config.access_key_id:
            self._credentials = self._aws.credentials.Credentials(
                config.access_key_id, config.secret_access_key, config.session_token)
        self._credentials_failed: tuple[float, str] | None = None  # when the chain last failed, and why
        self._credentials_lock = asyncio.Lock()
        self._headers = {k.lower(): v for k, v in config.headers.items()}

    def make_transport(self) -> Transport:
        return aiohttp_transport(self.name, self.config)  # the URL goes out exactly as signed

    async def start(self) -> None:
        """Walk the credential chain now, so the first call does not wait for it. A failure is only logged: the
        provider's calls report it (and fail over) until credentials appear."""
        if self._credentials is None:
            try:
                await self._resolve_credentials(Target(deployment="", model=""))
            except UpstreamError as e:
                log.warning("%s", e.message)

    # --- AWS: credentials and signing ---------------------------------------------------------------------

    def _no_credentials(self, target: Target, why: str) -> UpstreamError:
        # retryable: the request is fine, another deployment can serve it
        return UpstreamError(f"provider {self.name!r} has no usable AWS credentials: {why}", provider=self.name,
                             deployment=target.deployment, retryable=True)

    async def _resolve_credentials(self, target: Target) -> Any:
        """The credential chain, walked once (off the event loop: it reads files and may ask an endpoint)."""
        async with self._credentials_lock:
            if self._credentials is not None:
                return self._credentials
            failed = self._credentials_failed
            if failed is not None and time.monotonic() - failed[0] < _CREDENTIALS_RETRY_SECONDS:
                raise self._no_credentials(target, failed[1])
            try:
                creds = await asyncio.to_thread(self._session.get_credentials)
                why = "none were found in the AWS credential chain"
            except Exception as e:  # botocore's many credential-provider failures
                creds, why = None, f"{type(e).__name__}: {e}"
            if creds is None:
                self._credentials_failed = (time.monotonic(), why)
                raise self._no_credentials(target, why)
            self._credentials = creds
            return creds

    async def _frozen_credentials(self, target: Target) -> Any:
        creds = self._credentials
        if creds is None:
            creds = await self._resolve_credentials(target)
        try:
            refresh_needed = getattr(creds, "refresh_needed", None)
            if refresh_needed is not None and refresh_needed():
                return await asyncio.to_thread(creds.get_frozen_credentials)  # a refresh may block
            return creds.get_frozen_credentials()
        except Exception as e:
            raise self._no_credentials(target, f"{type(e).__name__}: {e}") from None

    def sign(self, url: str, body: bytes, headers: dict[str, str], credentials: Any) -> dict[str, str]:
        """SigV4-sign a POST; returns the headers to send (the given ones plus the date, token and signature)."""
        request = self._aws.awsrequest.AWSRequest(method="POST", url=url, data=body, headers=headers)
        self._aws.auth.SigV4Auth(credentials, SIGNING_NAME, self.region).add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}

    def url(self, model: str, operation: str) -> str:
        return f"{self.endpoint}/model/{quote(model, safe='')}/{operation}"

    async def _request(self, req: ChatRequest, target: Target, operation: str) -> tuple[str, bytes, dict[str, str]]:
        """The URL (sent exactly as signed), body and signed headers of one call. The configured ``headers`` are
        signed with the others, under the provider's own."""
        body = orjson.dumps(bedrock_wire.render_request(req, provider=self.name))
        url = self.url(target.model, operation)
        headers = {**self._headers, "content-type": "application/json", **target.extra_headers}
        if operation == "converse-stream":
            headers["accept-encoding"] = "identity"  # event-stream frames are read as they arrive, uncompressed
        signed = self.sign(url, body, headers, await self._frozen_credentials(target))
        return url, body, signed

    # --- errors -------------------------------------------------------------------------------------------

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> UpstreamError:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and "message" not in data and isinstance(data.get("Message"), str):
            body = orjson.dumps({"message": data["Message"]})  # some AWS front ends capitalise it
        err = status_error(status, headers, body, self.name, target.deployment)
        err_type = (headers.get("x-amzn-errortype") or "").split(":", 1)[0] or None
        err.upstream_type = err_type
        if err_type in _MODEL_FAILURES:  # Bedrock's 424: the model failed, not the caller; another may not
            err.status, err.kind, err.retryable, err.param = 502, "upstream", True, None
        return err

    def _stream_error(self, frame: Frame, target: Target) -> UpstreamError:
        try:
            data = orjson.loads(frame.payload) if frame.payload else {}
        except orjson.JSONDecodeError:
            data = {}
        if frame.message_type == "error":  # an unmodelled error: its code and message come as headers
            kind = frame.header(":error-code") or "error"
            detail = frame.header(":error-message") or ""
            status, retryable = 500, True
        else:
            kind = frame.exception_type or "exception"
            detail = str(data.get("message") or data.get("Message") or "") if isinstance(data, dict) else ""
            status, retryable = _STREAM_EXCEPTIONS.get(kind, (500, is_retryable_status(500)))
        upstream_type = kind[:1].upper() + kind[1:]
        err = UpstreamError(f"provider {self.name!r} failed mid-stream: {upstream_type}" + (f": {detail}" if detail
                            else ""), provider=self.name, deployment=target.deployment, upstream_status=status,
                            retryable=retryable, upstream_type=upstream_type)
        if upstream_type in _MODEL_FAILURES:
            err.status, err.kind = 502, "upstream"
        return err

    # --- calls --------------------------------------------------------------------------------------------

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        url, body, headers = await self._request(req, target, "converse")
        resp = await self.post(url, body, headers, target)
        data = self.parse_json(resp.body, target)
        if not isinstance(data.get("output"), dict):
            raise self.bad_reply("sent a reply without output", target)
        return bedrock_wire.parse_response(data, id=self._reply_id(resp.headers), model=target.model,
                                           created=int(time.time()))

    @staticmethod
    def _reply_id(headers: Mapping[str, str]) -> str:
        """Bedrock replies carry no id of their own; AWS's request id is the one worth quoting to its support."""
        return headers.get("x-amzn-requestid") or "bedrock-" + uuid.uuid4().hex

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        url, body, headers = await self._request(req, target, "converse-stream")
        resp = await self.open_stream(url, body, headers, target)
        try:
            state = bedrock_wire.StreamState(self._reply_id(resp.headers), target.model, int(time.time()))
            decoder = EventStreamDecoder()
            async for data in resp:
                for frame in decoder.feed(data):
                    if frame.message_type != "event":
                        raise self._stream_error(frame, target)
                    try:
                        payload = orjson.loads(frame.payload) if frame.payload else {}
                    except orjson.JSONDecodeError:
                        raise self.bad_reply("sent a stream event that is not JSON", target) from None
                    events = state.feed(frame.event_type or "", payload if isinstance(payload, dict) else {})
                    if events:
                        yield Chunk(events)
        except TRANSPORT_ERRORS as e:
            raise self.transport_error(e, target) from e
        except FrameError as e:
            raise self.bad_reply(f"sent a broken event-stream frame ({e})", target) from None
        finally:
            await resp.aclose()
        if not state.stopped:
            raise self.bad_reply("ended the stream early", target)
