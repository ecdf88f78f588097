/**
 * The browser driver: a native `WebSocket` carrying `hl/1`, a
 * `ClientSession` deciding what each message means, and the generated
 * module's shapes for the codecs. One `Connection` per socket.
 */
import { decode, DEFAULT_MAX_DEPTH } from "./decode.js";
import { encode } from "./encode.js";
import { CallError, ClientSession, DEFAULT_MAX_WAITING_CALLS, SessionError } from "./session.js";
import type { Shape, Types } from "./shape.js";


/** The subprotocol offered on the upgrade: `hl/1` spelled as a token browsers accept (`/` is refused by the WebSocket API; PROTOCOL.md section 2). */
export const SUBPROTOCOL = "hl.1";
/** Default per-call timeout, as the Rust client's `DEFAULT_CALL_TIMEOUT`. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Default time for the upgrade plus the server's initial state and features. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** A method's output: `Ok` of a `Result<T, E>` method, or its application error. */
export type Result<T, E> = { ok: true; value: T } | { ok: false; error: E };

/** One method, as the generator describes it. */
export interface MethodDesc {
  name: string;
  id: number;
  /** The input struct: the arguments in order (archived like a tuple). */
  input: Shape;
  ok: Shape;
  /** The application error type of a `Result<T, E>` method, else null. */
  err: Shape | null;
}

/** A service, as the generated module's `SERVICE`. */
export interface ServiceDesc {
  name: string;
  fingerprint: string;
  types: Types;
  methods: MethodDesc[];
  events: { id: number; name: string; shape: Shape }[];
  state: { name: string; shape: Shape }[];
}

/** How to connect. */
export interface ConnectOptions {
  /** Per-call timeout (default 30 s); a call may override it. */
  callTimeoutMs?: number;
  /** Upgrade plus initial state and features (default 10 s). */
  connectTimeoutMs?: number;
  /** Calls allowed to wait for a free call id (default 16384). */
  maxWaitingCalls?: number;
  /** Validation depth limit for received archives (default 64, as the server). */
  maxDepth?: number;
  /** A WebSocket constructor other than the global one (for other runtimes). */
  webSocket?: typeof WebSocket;
  /**
   * Send the service's schema fingerprint (default true), as the offered
   * subprotocol `hl-schema.<fingerprint>` (browsers cannot set the
   * `HardLight-Schema` header): a server built from another version of the
   * service refuses the upgrade.
   */
  schemaCheck?: boolean;
}

/** Prefix of the offered subprotocol that carries the schema fingerprint. */
export const SCHEMA_PROTOCOL_PREFIX = "hl-schema.";

/** Per-call options. */
export interface CallOptions {
  timeoutMs?: number;
}

type Listener<T> = (value: T) => void;

/** An open connection: typed calls, the state mirror, features and events. */
export class Connection<S = Record<string, unknown>, E = Record<string, unknown>> {
  private readonly session: ClientSession;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void; method: MethodDesc; timer: ReturnType<typeof setTimeout> | undefined }>();
  private readonly listeners = new Map<string, Set<Listener<never>>>();
  private readonly mirror: Record<string, unknown> = {};
  private readyResolve: (() => void) | undefined;
  private readyReject: ((e: Error) => void) | undefined;
  /** Protocol violations by the server (logged, otherwise ignored). */
  readonly errors: string[] = [];

  private constructor(
    private readonly ws: WebSocket,
    readonly service: ServiceDesc,
    private readonly options: ConnectOptions,
  ) {
    this.session = new ClientSession(options.maxWaitingCalls ?? DEFAULT_MAX_WAITING_CALLS);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev: MessageEvent) => this.onMessage(ev.data);
    ws.onclose = (ev: CloseEvent) => this.onClosed(`closed with code ${ev.code}${ev.reason ? ` (${ev.reason})` : ""}`);
    ws.onerror = () => {};
  }

  /** Opens a connection and waits until the server's initial state and features arrived. */
  static open<S, E>(url: string, service: ServiceDesc, options: ConnectOptions = {}): Promise<Connection<S, E>> {
    const Ws = options.webSocket ?? globalThis.WebSocket;
    const protocols = [SUBPROTOCOL];
    if (options.schemaCheck ?? true) protocols.push(SCHEMA_PROTOCOL_PREFIX + service.fingerprint);
    const ws = new Ws(url, protocols);
    const conn = new Connection<S, E>(ws, service, options);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`connect timed out after ${options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS} ms`));
        ws.close();
      }, options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
      conn.readyResolve = () => {
        clearTimeout(timer);
        resolve(conn);
      };
      conn.readyReject = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      ws.onopen = () => {
        if (ws.protocol !== SUBPROTOCOL) {
          conn.readyReject?.(new Error(`server selected subprotocol '${ws.protocol}', not ${SUBPROTOCOL}`));
          ws.close();
        }
      };
    });
  }

  private onMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) {
      this.errors.push("text message from the server ignored");
      return;
    }
    try {
      this.session.handleMessage(new Uint8Array(data));
    } catch (e) {
      if (!(e instanceof SessionError)) throw e;
      this.errors.push(e.message);
    }
    this.pump();
  }

  private onClosed(reason: string): void {
    this.session.handleClose(reason);
    this.readyReject?.(new Error(`connection failed: ${reason} (browsers do not show the HTTP status of a refused upgrade)`));
    this.readyReject = undefined;
    this.pump();
  }

  /** Sends what the session queued and delivers what it reported. */
  private pump(): void {
    for (let m = this.session.pollTransmit(); m; m = this.session.pollTransmit()) this.ws.send(m);
    const types = this.service.types;
    const depth = this.options.maxDepth ?? DEFAULT_MAX_DEPTH;
    for (let ev = this.session.pollEvent(); ev; ev = this.session.pollEvent()) {
      switch (ev.type) {
        case "reply": {
          const p = this.pending.get(ev.call);
          if (!p) break;
          this.pending.delete(ev.call);
          clearTimeout(p.timer);
          const r = ev.result;
          if (r instanceof CallError) {
            p.reject(r);
            break;
          }
          try {
            if (r.ok) {
              const v = decode(types, p.method.ok, r.payload, depth);
              p.resolve(p.method.err ? { ok: true, value: v } : v);
            } else if (p.method.err) {
              p.resolve({ ok: false, error: decode(types, p.method.err, r.payload, depth) });
            } else {
              p.reject(new CallError("InvalidResponse", `${p.method.name} has no error type but the server sent one`));
            }
          } catch (e) {
            p.reject(new CallError("InvalidResponse", `response failed validation: ${(e as Error).message}`));
          }
          break;
        }
        case "state":
          for (const i of ev.changed) {
            const f = this.service.state[i];
            const archive = this.session.stateField(i);
            if (!f || !archive) {
              this.errors.push(`state field ${i} is not declared`);
              continue;
            }
            try {
              this.mirror[f.name] = decode(types, f.shape, archive, depth);
            } catch (e) {
              this.errors.push(`state field ${f.name}: ${(e as Error).message}`);
            }
          }
          this.emit("$state", this.state);
          break;
        case "features":
          this.emit("$features", this.enabledMethods());
          if (this.readyResolve) {
            this.readyResolve();
            this.readyResolve = undefined;
            this.readyReject = undefined;
          }
          break;
        case "event": {
          const decl = this.service.events[ev.ty];
          if (!decl) {
            this.errors.push(`event type ${ev.ty} is not declared by ${this.service.name}`);
            break;
          }
          try {
            this.emit(decl.name, decode(types, decl.shape, ev.archive, depth));
          } catch (e) {
            this.errors.push(`event ${decl.name}: ${(e as Error).message}`);
          }
          break;
        }
        case "eventsDropped":
          this.emit("$dropped", ev.count);
          break;
        case "closed":
          this.emit("$closed", ev.reason);
          break;
      }
    }
  }

  private emit(name: string, value: unknown): void {
    for (const l of this.listeners.get(name) ?? []) (l as Listener<unknown>)(value);
  }

  private listen(name: string, l: Listener<never>): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(l);
    return () => set.delete(l);
  }

  /**
   * Calls `method` with `args` (in declaration order). Resolves with the
   * output (a `Result` for `Result<T, E>` methods); rejects with a
   * `CallError` on timeout, refusal or disconnect. A call beyond the 256
   * in flight waits for a free id; its timeout runs while it waits.
   */
  call(method: MethodDesc, args: unknown[], options: CallOptions = {}): Promise<unknown> {
    let input: Uint8Array;
    let call: number;
    try {
      input = encode(this.service.types, method.input, args);
    } catch (e) {
      return Promise.reject(new CallError("Encode", `could not encode the call input: ${(e as Error).message}`));
    }
    const timeoutMs = options.timeoutMs ?? this.options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    try {
      call = this.session.startCall(method.id, input, timeoutMs);
    } catch (e) {
      return Promise.reject(e);
    }
    const promise = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(call)) {
          this.session.abandon(call);
          this.pump(); // the CANCEL, if the server accepts one
          reject(new CallError("Timeout", `call timed out after ${timeoutMs} ms`));
        }
      }, timeoutMs);
      this.pending.set(call, { resolve, reject, method, timer });
    });
    this.pump();
    return promise;
  }

  /** The state mirror: every field as the server last sent it. */
  get state(): S {
    return { ...this.mirror } as S;
  }

  /** Names of the methods the server currently lets this connection call. */
  enabledMethods(): string[] {
    const f = this.session.features;
    return this.service.methods.filter((m) => f?.has(m.id)).map((m) => m.name);
  }

  /** Whether `name` is enabled (false before the first FEATURES). */
  isEnabled(name: string): boolean {
    const m = this.service.methods.find((x) => x.name === name);
    return m !== undefined && (this.session.features?.has(m.id) ?? false);
  }

  /** Listens for events of one declared type. Returns an unsubscribe function. */
  on<K extends keyof E & string>(event: K, listener: Listener<E[K]>): () => void {
    return this.listen(event, listener as Listener<never>);
  }
  /** Called after each state change with the whole mirror. */
  onState(listener: Listener<S>): () => void {
    return this.listen("$state", listener as Listener<never>);
  }
  /** Called when the enabled methods change. */
  onFeatures(listener: Listener<string[]>): () => void {
    return this.listen("$features", listener as Listener<never>);
  }
  /** Called when the server reports dropped events (this connection read too slowly). */
  onEventsDropped(listener: Listener<number>): () => void {
    return this.listen("$dropped", listener as Listener<never>);
  }
  /** Called once when the connection ends. */
  onClose(listener: Listener<string>): () => void {
    return this.listen("$closed", listener as Listener<never>);
  }

  /** Events the server dropped for this connection so far. */
  get eventsDropped(): number {
    return this.session.eventsDropped;
  }
  /** Call ids in use and calls waiting for one. */
  get load(): { inFlight: number; waiting: number } {
    return { inFlight: this.session.inFlight, waiting: this.session.waiting };
  }

  /** Closes the connection (1000); open calls fail with `Disconnected`. */
  close(): void {
    this.ws.close(1000);
    this.onClosed("closed by the application");
  }
}

/** Opens a connection for `service` (see `Connection.open`). */
export function connect<S, E>(url: string, service: ServiceDesc, options?: ConnectOptions): Promise<Connection<S, E>> {
  return Connection.open<S, E>(url, service, options);
}
