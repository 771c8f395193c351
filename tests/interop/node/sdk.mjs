// Re-exports the pinned TypeScript SDK's client API. setup.sh copies this file next to
// node_modules/ in ${CARGO_TARGET_DIR:-target}/interop/node/, so the bare specifiers below resolve
// through the SDK's package "exports" (its ESM build) from there. ts_client.mjs imports this file by
// absolute path; ESM imports ignore NODE_PATH, so nothing else would find the SDK.
export { Client } from '@modelcontextprotocol/sdk/client/index.js';
export { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
export { LATEST_PROTOCOL_VERSION, McpError } from '@modelcontextprotocol/sdk/types.js';
