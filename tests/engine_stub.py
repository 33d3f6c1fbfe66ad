"""A tiny OpenAI-compatible server that answers with responses in vLLM's streaming format.

Only for what no local server produces: a Qwen2.5-VL / Qwen3-VL answer with boxes in each
model's coordinate convention, vLLM's ``usage`` chunk, a server that refuses ``response_format``,
and broken servers (HTTP 500, a wrong key, a malformed stream, a stall). Everything else is
tested against a real ``transformers serve``.

Each request is recorded (body and Authorization header), so tests can check what was sent.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request  # at module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import JSONResponse, StreamingResponse

KEY = "sk-stub-secret-1234"
MODELS = ("Qwen/Qwen2.5-VL-72B-Instruct", "Qwen/Qwen3-VL-2B-Instruct")


@dataclass
class Stub:
    """What the stub answers next, and what it was sent."""

    url: str = ""
    answer: str = "A cat."
    mode: str = "ok"  # ok | http500 | malformed | stall | reject_response_format
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: Any = None

    def sent_image_size(self, index: int = -1) -> tuple[int, int]:
        """(width, height) of the image in a recorded request."""
        from PIL import Image

        for message in self.requests[index]["body"]["messages"]:
            for part in message.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    data = part["image_url"]["url"].split(",", 1)[1]
                    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
                        return im.size
        raise AssertionError("no image in the request")


def _chunk(model: str, content: str | None = None, finish: str | None = None, usage: dict | None = None) -> str:
    # vLLM's chunk layout: role first, content deltas, a finish_reason, then a usage-only chunk.
    choices = [] if usage else [{"index": 0, "delta": {"content": content} if content is not None else {},
                                 "logprobs": None, "finish_reason": finish}]  # fmt: skip
    body = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": choices}  # fmt: skip
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


def build_app(stub: Stub) -> Any:
    app = FastAPI()

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {KEY}"

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if not authorised(request):
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "vllm"} for m in MODELS]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        stub.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        if not authorised(request):
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, status_code=401)
        if stub.mode == "http500":
            return JSONResponse({"error": {"message": "CUDA out of memory on the engine"}}, status_code=500)
        if stub.mode == "reject_response_format" and "response_format" in body:
            return JSONResponse({"error": {"message": "response_format is not supported by this server"}},
                                status_code=400)  # fmt: skip
        model = body["model"]

        async def events() -> Any:
            yield _chunk(model, "")
            if stub.mode == "malformed":
                yield "data: {this is not json\n\n"
                return
            words = stub.answer.split(" ")
            for i, word in enumerate(words):
                if stub.mode == "stall" and i == 1:
                    await asyncio.sleep(30)
                yield _chunk(model, word + (" " if i < len(words) - 1 else ""))
            yield _chunk(model, finish="stop")
            yield _chunk(model, usage={"prompt_tokens": 321, "completion_tokens": 42, "total_tokens": 363})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def start(port: int) -> Stub:
    """Serve a new stub on 127.0.0.1:``port`` in a thread."""
    import uvicorn

    stub = Stub(url=f"http://127.0.0.1:{port}/v1")
    config = uvicorn.Config(build_app(stub), host="127.0.0.1", port=port, log_level="warning")
    stub.server = uvicorn.Server(config)
    threading.Thread(target=stub.server.run, daemon=True).start()
    deadline = time.time() + 20
    while not stub.server.started and time.time() < deadline:
        time.sleep(0.05)
    return stub
