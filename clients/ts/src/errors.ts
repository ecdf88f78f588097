/**
 * The typed errors of the client: what failed, and what to do about it.
 */

/** Why a call has no result: the kinds of `hardlight_core::CallError`. */
export type CallErrorKind =
  | "Rejected"
  | "UnknownErrorCode"
  | "Disconnected"
  | "Timeout"
  | "TooManyWaiting"
  | "TooLarge"
  | "Encode"
  | "InvalidResponse";

/** A call failed in the transport or protocol layer (never the application's own error type). */
export class CallError extends Error {
  constructor(
    readonly kind: CallErrorKind,
    message: string,
    /** For `Rejected`: the code's name (`MethodDisabled`, ...). */
    readonly code?: string,
    /** For `Rejected`: the server's detail text. */
    readonly detail?: string,
  ) {
    super(message);
    this.name = "CallError";
  }
}

/** A server message that broke the protocol; it is ignored and the connection stays usable. */
export class SessionError extends Error {}


/** Why a connection (or one transport of it) could not be established. */
export type ConnectErrorKind =
  /** The upgrade, initial state and features did not arrive within the connect timeout. */
  | "Timeout"
  /** The socket closed before the connection was ready (refused upgrade, server down, network). */
  | "Closed"
  /** The server broke the protocol during the handshake (e.g. selected another subprotocol). */
  | "Protocol"
  /** The on-connect hook threw or timed out. */
  | "Hook"
  /** `close()` was called before the connection was ready. */
  | "Aborted";

/** A connection could not be established; the message says what to check. */
export class ConnectError extends Error {
  constructor(
    readonly kind: ConnectErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "ConnectError";
  }
}
