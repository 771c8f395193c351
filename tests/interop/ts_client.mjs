#!/usr/bin/env node
// Interop client: drives an MCP server over streamable HTTP with the TypeScript SDK
// (@modelcontextprotocol/sdk 1.32.2, which speaks protocol 2025-11-25 with an initialize handshake).
//
// Invocation (after tests/interop/setup.sh):
//   INTEROP_NODE_DIR=${CARGO_TARGET_DIR:-target}/interop/node \
//     node tests/interop/ts_client.mjs --url http://127.0.0.1:PORT/mcp [--token T] [--expect-unauthorized]
// ESM imports ignore NODE_PATH and resolve bare specifiers from this file's own folder, so the SDK is
// loaded through INTEROP_NODE_DIR/sdk.mjs (copied there by setup.sh), imported by absolute path; that
// shim's own imports then resolve against INTEROP_NODE_DIR/node_modules. Without INTEROP_NODE_DIR the
// dir is ${CARGO_TARGET_DIR:-<repo>/target}/interop/node, <repo> being two folders above this file.
// Any cwd works.
//
// Steps: connect, tools/list (must include add, echo, progress), add {a:2,b:3} -> "5",
// echo {text:"hello interop"} -> same text, progress {steps:3, interval_ms:50} counting progress
// notifications (>= 1). Prints exactly one JSON line on stdout:
//   {"ok":true,"client":"typescript","mode":"legacy","protocol_version":"2025-11-25","tools":[...],
//    "add":"5","echo":"hello interop","progress_notifications":N}
// or {"ok":false,"client":"typescript","error":"..."} with exit code 1.
// With --expect-unauthorized, connecting must fail with StreamableHTTPError code 401 (the SDK's error
// for a non-OK POST when no authProvider is set); then it prints
//   {"ok":true,"client":"typescript","unauthorized":true,"status":401,"www_authenticate":"..."}.
// With --scenario broken (through a proxy that cuts the call's answer after its first progress
// notification): progress {steps:8, interval_ms:500}, then add (see `broken` below).
// With --scenario failures: slow {ms:5000} past the deadline, add, crash x4, add, then 5 concurrent
// slow {ms:400}; with --scenario rate: add until one fails (at most 20). Both print each call's
// outcome ({text}, {code,message} for a JSON-RPC error, {http,message} for a non-OK HTTP answer; plus ms).
// Bounded by a 30 s overall timeout (env INTEROP_TIMEOUT_S overrides).

import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const OVERALL_TIMEOUT_MS = Number(process.env.INTEROP_TIMEOUT_S ?? '30') * 1000;
const REQUIRED_TOOLS = ['add', 'echo', 'progress'];

function finish(out, code) {
    process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(code));
}

class Failure extends Error {}

function describe(e) {
    if (e instanceof Failure) return e.message;
    const name = e?.constructor?.name && e.constructor.name !== 'Error' ? e.constructor.name : (e?.name ?? 'Error');
    const code = e && e.code !== undefined ? `(${e.code})` : '';
    const cause = e?.cause ? ` (cause: ${describe(e.cause)})` : '';
    return `${name}${code}: ${e?.message ?? String(e)}${cause}`;
}

function textOf(result, tool) {
    if (result.isError) throw new Failure(`${tool}: tool returned isError: ${JSON.stringify(result.content)}`);
    const texts = (result.content ?? []).filter(c => c.type === 'text').map(c => c.text);
    if (texts.length !== 1) throw new Failure(`${tool}: expected one text content block, got ${JSON.stringify(result.content)}`);
    return texts[0];
}

// One call's outcome: {text} or, for a JSON-RPC error, {code, message}; for a non-OK HTTP answer
// (which this SDK raises as StreamableHTTPError, the JSON-RPC body only in its message)
// {http, code, message}, code read from that body; plus how long it took.
async function callOutcome(client, sdk, name, args) {
    const started = performance.now();
    let out;
    try {
        out = { text: textOf(await client.callTool({ name, arguments: args }), name) };
    } catch (e) {
        if (e instanceof sdk.StreamableHTTPError) {
            out = { http: e.code, message: e.message };
            // The answer's JSON-RPC error, when the message carries it.
            try {
                out.code = JSON.parse(e.message.slice(e.message.indexOf('{'))).error.code;
            } catch {
                // No JSON-RPC body: the status is all there is.
            }
        }
        else if (e instanceof sdk.McpError) out = { code: e.code, message: e.message };
        else throw e;
    }
    out.ms = Math.round(performance.now() - started);
    return out;
}

// The example server's failure answers (server with a short call timeout, a breaker tripping after
// 3 failures, a bulkhead of 2 running + 1 queued for `slow`).
async function failures(client, sdk) {
    const timeout = await callOutcome(client, sdk, 'slow', { ms: 5000 });
    const afterTimeout = await callOutcome(client, sdk, 'add', { a: 2, b: 3 });
    const crash = [];
    for (let i = 0; i < 4; i++) crash.push(await callOutcome(client, sdk, 'crash', {}));
    const afterCrash = await callOutcome(client, sdk, 'add', { a: 2, b: 3 });
    const concurrent = await Promise.all(
        Array.from({ length: 5 }, () => callOutcome(client, sdk, 'slow', { ms: 400 }))
    );
    return { timeout, after_timeout: afterTimeout, crash, after_crash: afterCrash, concurrent_slow: concurrent };
}

// Calls `add` until one fails (at most 20 calls).
async function rate(client, sdk) {
    const outcomes = [];
    for (let i = 0; i < 20; i++) {
        outcomes.push(await callOutcome(client, sdk, 'add', { a: 2, b: 3 }));
        if (!('text' in outcomes[outcomes.length - 1])) break;
    }
    return { rate: outcomes };
}

// A call whose answer stream the network cuts (a proxy, after the first progress notification),
// then `add` on the same session.
async function broken(client, sdk) {
    let progress = 0;
    const started = performance.now();
    let call;
    try {
        const result = await client.callTool(
            { name: 'progress', arguments: { steps: 8, interval_ms: 500 } },
            undefined,
            { onprogress: () => { progress += 1; } }
        );
        call = { text: textOf(result, 'progress') };
    } catch (e) {
        if (e instanceof sdk.McpError) call = { code: e.code, message: e.message };
        else throw e;
    }
    call.ms = Math.round(performance.now() - started);
    call.progress = progress;
    return { call, after: await callOutcome(client, sdk, 'add', { a: 2, b: 3 }) };
}

function nodeDir() {
    if (process.env.INTEROP_NODE_DIR) return path.resolve(process.env.INTEROP_NODE_DIR);
    const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
    const target = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(repo, 'target');
    return path.join(target, 'interop', 'node');
}

async function run(args) {
    const dir = nodeDir();
    let sdk;
    try {
        sdk = await import(pathToFileURL(path.join(dir, 'sdk.mjs')).href);
    } catch (e) {
        throw new Failure(`cannot load the SDK from ${dir} (run tests/interop/setup.sh): ${describe(e)}`);
    }
    const { Client, StreamableHTTPClientTransport, StreamableHTTPError } = sdk;

    const headers = args.token !== undefined ? { Authorization: `Bearer ${args.token}` } : {};
    // The SDK's errors carry no headers: the challenge, and every answer >= 400 with its
    // Retry-After ("http_errors", as the Python client reports them), are read off the answers here.
    let challenge;
    const httpErrors = [];
    const seeing = async (url, init) => {
        const r = await fetch(url, init);
        if (r.status === 401) challenge = r.headers.get('www-authenticate') ?? undefined;
        if (r.status >= 400) {
            httpErrors.push({ method: init?.method ?? 'GET', status: r.status, retry_after: r.headers.get('retry-after') });
        }
        return r;
    };
    const transport = new StreamableHTTPClientTransport(new URL(args.url), { requestInit: { headers }, fetch: seeing });
    const client = new Client({ name: 'tower-armor-interop', version: '0.0.0' });
    // Transport-level errors (e.g. the optional GET stream) land here; log them, the calls decide.
    // Closing aborts the GET stream, which reports an AbortError here: expected, so not logged.
    let closing = false;
    client.onerror = e => {
        if (!closing) process.stderr.write(`ts_client: onerror: ${describe(e)}\n`);
    };

    try {
        await client.connect(transport);
    } catch (e) {
        if (args.expectUnauthorized && e instanceof StreamableHTTPError && e.code === 401) {
            return { ok: true, client: 'typescript', unauthorized: true, status: 401, www_authenticate: challenge };
        }
        if (args.expectUnauthorized) throw new Failure(`expected StreamableHTTPError 401 on connect, got ${describe(e)}`);
        throw e;
    }
    try {
        if (args.expectUnauthorized) throw new Failure('expected HTTP 401 but connect succeeded');
        if (args.scenario !== 'basic') {
            const scenarios = { failures, rate, broken };
            const out = await scenarios[args.scenario](client, sdk);
            return { ok: true, client: 'typescript', mode: 'legacy', scenario: args.scenario, ...out, http_errors: httpErrors };
        }
        const listed = await client.listTools();
        const tools = listed.tools.map(t => t.name).sort();
        const missing = REQUIRED_TOOLS.filter(t => !tools.includes(t));
        if (missing.length) throw new Failure(`tools/list lacks ${JSON.stringify(missing)}; got ${JSON.stringify(tools)}`);

        const add = textOf(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }), 'add');
        if (add !== '5') throw new Failure(`add: expected "5", got ${JSON.stringify(add)}`);

        const echo = textOf(await client.callTool({ name: 'echo', arguments: { text: 'hello interop' } }), 'echo');
        if (echo !== 'hello interop') throw new Failure(`echo: expected "hello interop", got ${JSON.stringify(echo)}`);

        let progressNotifications = 0;
        const result = await client.callTool(
            { name: 'progress', arguments: { steps: 3, interval_ms: 50 } },
            undefined,
            { onprogress: () => { progressNotifications += 1; } }
        );
        textOf(result, 'progress');
        if (progressNotifications < 1) throw new Failure('progress: no progress notification arrived');

        return {
            ok: true,
            client: 'typescript',
            mode: 'legacy',
            protocol_version: transport.protocolVersion ?? null,
            tools,
            add,
            echo,
            progress_notifications: progressNotifications
        };
    } finally {
        closing = true;
        // Ends the session with DELETE (as a well-behaved client does), then closes the transport.
        await transport.terminateSession().catch(e => process.stderr.write(`ts_client: terminateSession: ${describe(e)}\n`));
        await client.close().catch(() => {});
    }
}

let args;
try {
    const { values } = parseArgs({
        options: {
            url: { type: 'string' },
            token: { type: 'string' },
            'expect-unauthorized': { type: 'boolean', default: false },
            scenario: { type: 'string', default: 'basic' }
        },
        strict: true
    });
    if (!values.url) throw new Error('--url is required');
    if (!['basic', 'failures', 'rate', 'broken'].includes(values.scenario)) throw new Error('--scenario is basic, failures, rate or broken');
    args = { url: values.url, token: values.token, expectUnauthorized: values['expect-unauthorized'], scenario: values.scenario };
} catch (e) {
    finish({ ok: false, client: 'typescript', error: `usage: ${e.message}` }, 1);
}

if (args) {
    const timer = setTimeout(
        () => finish({ ok: false, client: 'typescript', error: `overall timeout of ${OVERALL_TIMEOUT_MS / 1000} s exceeded` }, 1),
        OVERALL_TIMEOUT_MS
    );
    run(args).then(
        out => { clearTimeout(timer); finish(out, 0); },
        e => { clearTimeout(timer); finish({ ok: false, client: 'typescript', error: describe(e) }, 1); }
    );
}
