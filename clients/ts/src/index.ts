/**
 * HardLight's browser client: `hl/1` over the native WebSocket, with rkyv
 * codecs driven by modules that `hardlight-codegen` generates from the Rust
 * service. See clients/ts/README.md.
 */
export { connect, Connection, SUBPROTOCOL, SCHEMA_PROTOCOL_PREFIX, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from "./client.js";
export type { CallOptions, ConnectOptions, MethodDesc, Result, ServiceDesc } from "./client.js";
export { CallError, ClientSession, FeatureSet, SessionError, MAX_CALLS_IN_FLIGHT, DEFAULT_MAX_WAITING_CALLS } from "./session.js";
export type { CallErrorKind, RawReply, SessionEvent } from "./session.js";
export { decode, DecodeError, DEFAULT_MAX_DEPTH } from "./decode.js";
export { encode, EncodeError } from "./encode.js";
export { layoutOf } from "./shape.js";
export type { FieldsDesc, Layout, Shape, TypeDef, Types } from "./shape.js";
