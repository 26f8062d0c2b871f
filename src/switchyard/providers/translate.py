"""Guards that every translating provider shares: what a client's protocol carries that another wire cannot.

A request keeps the top-level fields its protocol has but the neutral model does not (``ChatRequest.extra``). A
provider of the same wire forwards them; any other provider must refuse them by name rather than drop them, unless
they only steer the client's own vendor's service (``HARMLESS_EXTRAS``). Likewise parts and tools that only
Anthropic can run (server tools and their result blocks, kept whole in ``meta``) are refused by the others.
"""

from __future__ import annotations

from ..errors import UnsupportedParameter
from ..messages import WIRE_OPENAI_RESPONSES, ChatRequest

# Fields that do not change what the model says: storage, billing tier and cache hints of the client's own vendor.
# The Responses API's ``include`` (extra output fields) and ``truncation`` (what to do past the context window) only
# shape what OpenAI returns or keeps; the gateway answers them itself for other providers.
# Also Anthropic's ``context_management`` (server-side context editing, which Claude Code sends with the
# ``context-management-*`` beta): it only trims what the upstream keeps of a long conversation; a translated request
# carries the whole conversation instead, so the answer is the same and only the token count differs.
HARMLESS_EXTRAS = frozenset({"store", "service_tier", "safety_identifier", "prompt_cache_key",
                             "prompt_cache_retention", "include", "truncation", "context_management"})


def refuse_foreign_extras(req: ChatRequest, provider: str, wire: str) -> None:
    """Refuse, by name, a field of another protocol that this provider's wire cannot carry."""
    if wire != WIRE_OPENAI_RESPONSES:
        refuse_openai_only(req, provider)
    if req.wire == wire:
        return
    for key, value in req.extra.items():
        if key in HARMLESS_EXTRAS or value in (None, {}, [], "") or (key == "modalities" and value == ["text"]):
            continue
        raise UnsupportedParameter(f"{key} is not supported by provider {provider!r}: its API has no such parameter",
                                   param=key)


def refuse_anthropic_only(req: ChatRequest, provider: str) -> None:
    """Refuse Anthropic server tools, and the blocks they leave in a conversation, for any other provider."""
    for t in req.tools or ():
        if t.meta and "anthropic_server_tool" in t.meta:
            raise UnsupportedParameter(
                f"tools: the server tool {t.name!r} runs only on Anthropic, not on provider {provider!r}",
                param="tools")
    for i, m in enumerate(req.messages):
        for p in m.parts:
            if p.meta and "anthropic_block" in p.meta:
                block = p.meta["anthropic_block"]
                if block == "image":  # an image by Anthropic Files API id
                    kind = "image file id"
                else:
                    kind = str(block.get("type")) if isinstance(block, dict) else str(block)
                raise UnsupportedParameter(
                    f"messages[{i}]: a {kind!r} content block cannot be sent to provider {provider!r}",
                    param=f"messages[{i}].content")


def refuse_untranslatable(req: ChatRequest, provider: str, wire: str) -> None:
    refuse_foreign_extras(req, provider, wire)
    refuse_anthropic_only(req, provider)


def refuse_openai_only(req: ChatRequest, provider: str) -> None:
    """Refuse the Responses API's built-in tools (web search, file search, computer use, code interpreter, ...) and
    the items they leave in a conversation, for any provider that does not speak the Responses wire."""
    prompt = req.extra.get("prompt") if req.wire == WIRE_OPENAI_RESPONSES else None
    if isinstance(prompt, dict) and "id" in prompt:
        raise UnsupportedParameter(
            f"prompt: {str(prompt['id'])[:80]!r} is a prompt stored at OpenAI, which only OpenAI's Responses API "
            f"serves, not provider {provider!r} (a deployment of an openai provider with api: responses can; a "
            "managed prompt is named by prompt.name)", param="prompt.id")
    for t in req.tools or ():
        if t.meta and "openai_builtin_tool" in t.meta:
            raise UnsupportedParameter(
                f"tools: the built-in tool {t.name!r} runs only on OpenAI's Responses API, not on provider "
                f"{provider!r} (a deployment of an openai provider with api: responses can run it)", param="tools")
    for m in req.messages:
        for p in m.parts:
            if p.meta and "openai_item" in p.meta:
                item = p.meta["openai_item"]
                kind = item.get("type") if isinstance(item, dict) else None
                raise UnsupportedParameter(
                    f"input: a {kind!r} item cannot be sent to provider {provider!r}: only OpenAI's Responses API "
                    "runs it", param="input")
