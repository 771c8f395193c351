#!/usr/bin/env python3
"""Interop client: drives an MCP server over streamable HTTP with the Python SDK (mcp==2.3.0).

Run with the interpreter of the venv that setup.sh builds:

    ${CARGO_TARGET_DIR:-target}/interop/venv/bin/python tests/interop/py_client.py \
        --url http://127.0.0.1:PORT/mcp --mode legacy|2026-07-28 [--token T] [--expect-unauthorized]

Steps: connect, tools/list (must include add, echo, progress), add {a:2,b:3} -> "5",
echo {text:"hello interop"} -> same text, progress {steps:3, interval_ms:50} counting progress
notifications (>= 1). Prints exactly one JSON line on stdout:
    {"ok":true,"client":"python","mode":...,"protocol_version":...,"tools":[...],"add":"5",
     "echo":"hello interop","progress_notifications":N}
or {"ok":false,"client":"python","error":"..."} with exit code 1.
With --expect-unauthorized the session must fail with HTTP 401 (seen on the wire through an httpx2
response hook: the SDK itself maps a 401 without a JSON-RPC body to MCPError -32603 "Server returned
an error response", with no status in it); then it prints
    {"ok":true,"client":"python","unauthorized":true,"status":401,"www_authenticate":"..."}.
With --scenario failures (server with a short call timeout, a breaker tripping after 3 failures, and
a bulkhead of 2 running + 1 queued for `slow`), instead: slow {ms:5000} past the deadline, add,
crash x4, add, then 5 concurrent slow {ms:400}; with --scenario rate: add until an error (at most
20). Both print each call's outcome ({"text":...} or {"code":...,"message":...}, plus "ms") and
every HTTP answer >= 400 with its Retry-After ("http_errors"). With --scenario listen (2026-07-28
only; a server with an SSE idle timeout): opens a subscriptions/listen stream and reads it until
it ends, printing "listen_ended" ("graceful", or the error the SDK raised: SubscriptionLost when
the stream ended without the server's final result), "listen_events" and "listen_s". With
--scenario broken (through a proxy that cuts the connection of the call's answer after its first
progress notification): progress {steps:8, interval_ms:500}, whose outcome ("call": text or
code/message, "ms", "progress" count) shows what the SDK made of the break (it resumes with GET +
Last-Event-ID), then add ("after").
Everything is bounded by a 30 s overall timeout (env INTEROP_TIMEOUT_S overrides). SDK log lines go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared._httpx_utils import create_mcp_http_client

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup

OVERALL_TIMEOUT_S = float(os.environ.get("INTEROP_TIMEOUT_S", "30"))
REQUIRED_TOOLS = ("add", "echo", "progress")


class Failure(Exception):
    pass


def text_of(result: Any, tool: str) -> str:
    if getattr(result, "is_error", False):
        raise Failure(f"{tool}: tool returned isError: {result.content!r}")
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    if len(texts) != 1:
        raise Failure(f"{tool}: expected one text content block, got {result.content!r}")
    return texts[0]


class Recorder:
    """httpx2 response hook: remembers every HTTP status the client saw."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, int, str | None, str | None]] = []

    async def __call__(self, response: httpx2.Response) -> None:
        self.responses.append(
            (
                response.request.method,
                response.status_code,
                response.headers.get("www-authenticate"),
                response.headers.get("retry-after"),
            )
        )

    def first(self, status: int) -> tuple[str, int, str | None, str | None] | None:
        return next((r for r in self.responses if r[1] == status), None)

    def errors(self) -> list[dict[str, Any]]:
        """Every HTTP answer >= 400: method, status and Retry-After."""
        return [{"method": r[0], "status": r[1], "retry_after": r[3]} for r in self.responses if r[1] >= 400]


async def call_outcome(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One call's outcome: {"text": ...} or {"code": ..., "message": ...}, with how long it took."""
    started = time.monotonic()
    try:
        text = text_of(await client.call_tool(tool, arguments), tool)
        out: dict[str, Any] = {"text": text}
    except MCPError as e:
        out = {"code": e.code, "message": e.message}
    out["ms"] = round((time.monotonic() - started) * 1000)
    return out


async def failures(client: Client, recorder: Recorder) -> dict[str, Any]:
    """The example server's failure answers, as this client sees them (see --scenario)."""
    timeout = await call_outcome(client, "slow", {"ms": 5000})
    after_timeout = await call_outcome(client, "add", {"a": 2, "b": 3})
    crash = [await call_outcome(client, "crash", {}) for _ in range(4)]
    after_crash = await call_outcome(client, "add", {"a": 2, "b": 3})
    concurrent: list[dict[str, Any]] = []

    async def one_slow() -> None:
        concurrent.append(await call_outcome(client, "slow", {"ms": 400}))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one_slow)
    return {
        "timeout": timeout,
        "after_timeout": after_timeout,
        "crash": crash,
        "after_crash": after_crash,
        "concurrent_slow": sorted(concurrent, key=lambda o: o.get("code", 0)),
        "http_errors": recorder.errors(),
    }


async def rate(client: Client, recorder: Recorder) -> dict[str, Any]:
    """Calls `add` until the rate limit answers (at most 20 calls)."""
    outcomes = []
    for _ in range(20):
        outcomes.append(await call_outcome(client, "add", {"a": 2, "b": 3}))
        if "code" in outcomes[-1]:
            break
    return {"rate": outcomes, "http_errors": recorder.errors()}


async def broken(client: Client) -> dict[str, Any]:
    """A call whose answer stream the network cuts (see --scenario), then add on the same session."""
    progress_events = 0

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal progress_events
        progress_events += 1

    started = time.monotonic()
    try:
        result = await client.call_tool("progress", {"steps": 8, "interval_ms": 500}, progress_callback=on_progress)
        call: dict[str, Any] = {"text": text_of(result, "progress")}
    except MCPError as e:
        call = {"code": e.code, "message": e.message}
    call["ms"] = round((time.monotonic() - started) * 1000)
    call["progress"] = progress_events
    return {"call": call, "after": await call_outcome(client, "add", {"a": 2, "b": 3})}


async def listen(client: Client) -> dict[str, Any]:
    """Reads a subscriptions/listen stream to its end (see --scenario)."""
    started = time.monotonic()
    events = 0
    try:
        async with client.listen(tools_list_changed=True) as subscription:
            async for _ in subscription:
                events += 1
        ended = "graceful"
    except Exception as e:  # the SDK's SubscriptionLost and the like: reported, not raised
        ended = describe(e)
    return {
        "listen_ended": ended,
        "listen_events": events,
        "listen_s": round(time.monotonic() - started, 2),
    }


async def run(args: argparse.Namespace, recorder: Recorder) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token is not None else None
    http_client = create_mcp_http_client(headers=headers)
    http_client.event_hooks["response"].append(recorder)
    async with http_client:
        transport = streamable_http_client(args.url, http_client=http_client)
        async with Client(transport, mode=args.mode) as client:
            if args.scenario != "basic":
                # A rate-limited tools/list would end the run here: the scenario's calls come first.
                if args.scenario == "listen":
                    out = await listen(client)
                elif args.scenario == "broken":
                    out = await broken(client)
                else:
                    out = await (failures if args.scenario == "failures" else rate)(client, recorder)
                return {"ok": True, "client": "python", "mode": args.mode, "scenario": args.scenario, **out}
            # Under mode="2026-07-28" entering sends nothing (no handshake): the first request is tools/list.
            listed = await client.list_tools()
            tools = sorted(t.name for t in listed.tools)
            if args.expect_unauthorized:
                raise Failure(f"expected HTTP 401 but the session worked (tools: {tools})")
            missing = [t for t in REQUIRED_TOOLS if t not in tools]
            if missing:
                raise Failure(f"tools/list lacks {missing}; got {tools}")

            add = text_of(await client.call_tool("add", {"a": 2, "b": 3}), "add")
            if add != "5":
                raise Failure(f'add: expected "5", got {add!r}')

            echo = text_of(await client.call_tool("echo", {"text": "hello interop"}), "echo")
            if echo != "hello interop":
                raise Failure(f"echo: expected 'hello interop', got {echo!r}")

            progress_events: list[tuple[float, float | None, str | None]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                progress_events.append((progress, total, message))

            result = await client.call_tool(
                "progress", {"steps": 3, "interval_ms": 50}, progress_callback=on_progress
            )
            text_of(result, "progress")
            if len(progress_events) < 1:
                raise Failure("progress: no progress notification arrived")

            return {
                "ok": True,
                "client": "python",
                "mode": args.mode,
                "protocol_version": client.protocol_version,
                "tools": tools,
                "add": add,
                "echo": echo,
                "progress_notifications": len(progress_events),
            }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    recorder = Recorder()
    try:
        with anyio.fail_after(OVERALL_TIMEOUT_S):
            return await run(args, recorder)
    except TimeoutError as e:
        raise Failure(f"overall timeout of {OVERALL_TIMEOUT_S:g} s exceeded") from e
    except Exception as e:  # task groups may wrap what `run` raised in an ExceptionGroup
        failure = next((x for x in leaves(e) if isinstance(x, Failure)), None)
        if failure is not None:
            raise failure from None
        if args.expect_unauthorized:
            hit = recorder.first(401)
            if hit is not None:
                return {
                    "ok": True,
                    "client": "python",
                    "unauthorized": True,
                    "status": 401,
                    "www_authenticate": hit[2],
                }
            raise Failure(f"expected HTTP 401, saw {recorder.responses}; error: {describe(e)}") from e
        http_errors = [f"{r[0]} {r[1]}" for r in recorder.responses if r[1] >= 400]
        suffix = f" (HTTP errors seen: {', '.join(http_errors)})" if http_errors else ""
        raise Failure(describe(e) + suffix) from e


def leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for x in e.exceptions for leaf in leaves(x)]
    return [e]


def describe(e: BaseException) -> str:
    parts = []
    for x in leaves(e):
        code = getattr(x, "code", None)
        parts.append(f"{type(x).__name__}" + (f"({code})" if code is not None else "") + f": {x}")
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", required=True, choices=["legacy", "2026-07-28", "auto"])
    parser.add_argument("--token")
    parser.add_argument("--expect-unauthorized", action="store_true")
    parser.add_argument("--scenario", choices=["basic", "failures", "rate", "listen", "broken"], default="basic")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="py_client %(levelname)s %(name)s: %(message)s")

    try:
        out = anyio.run(main_async, args)
        code = 0
    except Failure as e:
        out = {"ok": False, "client": "python", "error": str(e)}
        code = 1
    except BaseException as e:  # noqa: BLE001
        out = {"ok": False, "client": "python", "error": describe(e)}
        code = 1
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
