/**
 * HardLight's browser client: `hl/1` over the native WebSocket, with rkyv
 * codecs driven by modules that `hardlight-codegen` generates from the Rust
 * service, reconnect with backoff, and event resume. See clients/ts/README.md.
 */
export { connect, Connection, SUBPROTOCOL, SCHEMA_PROTOCOL_PREFIX, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from "./client.js";
export type { CallOptions, ConnectOptions, MethodDesc, Result, ServiceDesc } from "./client.js";
export { CallError, ConnectError, SessionError } from "./errors.js";
export type { CallErrorKind, ConnectErrorKind } from "./errors.js";
export { ClientSession, FeatureSet, MAX_CALLS_IN_FLIGHT, DEFAULT_MAX_WAITING_CALLS } from "./session.js";
export type { Link, RawReply, SessionEvent } from "./session.js";
export {
  backoffDelay,
  seededRandom,
  DEFAULT_BACKOFF,
  DEFAULT_BACKOFF_INITIAL_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_BACKOFF_MULTIPLIER,
  DEFAULT_BACKOFF_JITTER,
  MAX_BACKOFF_EXPONENT,
} from "./backoff.js";
export type { Backoff } from "./backoff.js";
export { supervise } from "./reconnect.js";
export type { LoopOptions, Status, Supervised } from "./reconnect.js";
export {
  encodeResume,
  parseGap,
  parseResumePoint,
  parseTopicEvent,
  Positions,
  DEFAULT_MAX_TRACKED_TOPICS,
  MAX_RESUME_TOPICS,
  MAX_TOPIC_LEN,
  MISSED_UNKNOWN,
  RESUME_PROTOCOL,
  KIND_RESUME,
  KIND_TOPIC_EVENT,
  KIND_GAP,
  KIND_RESUME_POINT,
} from "./resume.js";
export type { Gap, GapNotice, Position, Received, ResumePoint, TopicEvent } from "./resume.js";
export { decode, DecodeError, DEFAULT_MAX_DEPTH } from "./decode.js";
export { encode, EncodeError } from "./encode.js";
export { layoutOf } from "./shape.js";
export type { FieldsDesc, Layout, Shape, TypeDef, Types } from "./shape.js";
