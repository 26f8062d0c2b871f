"""Run by tests/test_client_llamaindex.py with the Python of its own virtualenv (LlamaIndex needs ``openai<3``, the
project ``openai>=3``): LlamaIndex's ``OpenAILike`` against the gateway, printing what it got as one JSON object.

Usage: ``python llamaindex_client.py BASE_URL KEY MODEL...``; prints ``{model: results}``. Not a test module: pytest
does not collect it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(base_url: str, key: str, model: str) -> dict[str, Any]:
    import openai
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    # is_chat_model=True: every call a /v1/chat/completions (the default, False, sends the legacy /v1/completions)
    llm = OpenAILike(model=model, api_base=base_url, api_key=key, is_chat_model=True, context_window=8192,
                     max_retries=0, timeout=30)
    out: dict[str, Any] = {}
    done = llm.complete("complete this")
    usage = getattr(done.raw, "usage", None)  # the openai SDK's ChatCompletion
    out["complete"] = {"text": done.text, "usage": usage.model_dump() if usage is not None else None}
    messages = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="chat with me")]
    reply = llm.chat(messages)
    out["chat"] = {"role": str(reply.message.role.value), "content": reply.message.content}
    out["stream_complete"] = [r.delta for r in llm.stream_complete("stream a completion")]
    out["stream_chat"] = [r.delta for r in llm.stream_chat([ChatMessage(role="user", content="stream a chat")])]
    legacy = OpenAILike(model=model, api_base=base_url, api_key=key, max_retries=0, timeout=30)
    try:
        legacy.complete("legacy completion")
        out["legacy"] = None
    except openai.APIStatusError as e:
        out["legacy"] = {"status": e.status_code, "body": e.body}
    return out


if __name__ == "__main__":
    base, key, *models = sys.argv[1:]
    print(json.dumps({model: main(base, key, model) for model in models}))
