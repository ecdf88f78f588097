/**
 * The browser driver: native `WebSocket`s carrying `hl/1`, one
 * `ClientSession` deciding what each message means across all of them,
 * the reconnect loop (reconnect.ts) replacing a dropped socket, and the
 * generated module's shapes for the codecs.
 */
import { DEFAULT_BACKOFF, type Backoff } from "./backoff.js";
import { decode, DEFAULT_MAX_DEPTH } from "./decode.js";
import { encode } from "./encode.js";
import { CallError, ConnectError, SessionError } from "./errors.js";
import {
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  SCHEMA_PROTOCOL_PREFIX,
  SUBPROTOCOL,
  type CallOptions,
  type ConnectOptions,
  type MethodDesc,
  type ServiceDesc,
} from "./options.js";
import { supervise, type Status } from "./reconnect.js";
import { RESUME_PROTOCOL, type GapNotice, type Position } from "./resume.js";
import { ClientSession, DEFAULT_MAX_WAITING_CALLS, type SessionEvent } from "./session.js";

export { SUBPROTOCOL, SCHEMA_PROTOCOL_PREFIX, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from "./options.js";
export type { CallOptions, ConnectOptions, MethodDesc, Result, ServiceDesc } from "./options.js";

type Listener<T> = (value: T) => void;
interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  method: MethodDesc;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** An open connection: typed calls, the state mirror, features, events, and its status across reconnects. */
export class Connection<S = Record<string, unknown>, E = Record<string, unknown>> {
  private readonly session: ClientSession;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Set<Listener<never>>>();
  private mirror: Record<string, unknown> = {};
  private ws: WebSocket | undefined;
  private statusNow: Status = { state: "connecting" };
  private closing = false;
  private wake: (() => void) | undefined;
  private closedResolve!: (reason: string) => void;
  /** Protocol violations by the server (logged, otherwise ignored). */
  readonly errors: string[] = [];
  /** Resolves with the reason once the connection is closed for good (status `closed`). */
  readonly closed: Promise<string> = new Promise((r) => (this.closedResolve = r));

  private constructor(
    private readonly url: string,
    readonly service: ServiceDesc,
    private readonly options: ConnectOptions<S, E>,
  ) {
    this.session = new ClientSession(options.maxWaitingCalls ?? DEFAULT_MAX_WAITING_CALLS);
    this.session.setWaitWhileDisconnected(!(options.failFastWhileDisconnected ?? false));
    for (const m of service.methods) if (m.idempotent) this.session.setIdempotent(m.id);
    for (const name of options.idempotent ?? []) {
      const m = service.methods.find((x) => x.name === name);
      if (!m) {
        const known = service.methods.map((x) => x.name).join(", ");
        throw new TypeError(`idempotent: ${service.name} has no method '${name}' (its methods: ${known})`);
      }
      this.session.setIdempotent(m.id);
    }
    if (options.resume) this.session.enableResume(options.maxTrackedTopics);
  }

  /** Opens a connection and resolves once its first transport is ready (initial state, features, on-connect hook). */
  static open<S, E>(url: string, service: ServiceDesc, options: ConnectOptions<S, E> = {}): Promise<Connection<S, E>> {
    let conn: Connection<S, E>;
    try {
      conn = new Connection<S, E>(url, service, options);
    } catch (e) {
      return Promise.reject(e);
    }
    const r = options.reconnect;
    const backoff: Backoff | undefined = r ? { ...DEFAULT_BACKOFF, ...(r === true ? {} : r) } : undefined;
    return new Promise((resolve, reject) => {
      const loop = supervise(conn, { backoff, random: options.random ?? Math.random }, (e) =>
        e === undefined ? resolve(conn) : reject(e),
      );
      loop.then((reason) => conn.finish(reason));
    });
  }

  // -- the reconnect loop's side (reconnect.ts `Supervised`) --

  /** @internal */
  establish(): Promise<{ ended: Promise<string> }> {
    if (this.closing) {
      return Promise.reject(new ConnectError("Aborted", "the connection was closed by the application"));
    }
    const o = this.options;
    const timeoutMs = o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const protocols = [SUBPROTOCOL];
    if (o.schemaCheck ?? true) protocols.push(SCHEMA_PROTOCOL_PREFIX + this.service.fingerprint);
    if (this.session.resumes) protocols.push(RESUME_PROTOCOL);
    const ws = new (o.webSocket ?? globalThis.WebSocket)(this.url, protocols);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let ended!: (reason: string) => void;
    const end = new Promise<string>((r) => (ended = r));
    return new Promise((resolve, reject) => {
      let settled = false;
      let hooked = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const fail = (e: ConnectError) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        this.dropped(ws, e.message);
        ws.close();
        reject(e);
      };
      const arm = (what: string) => {
        clearTimeout(timer);
        const kind = what === "hook" ? "Hook" : "Timeout";
        timer = setTimeout(() => fail(new ConnectError(kind, `${what} timed out after ${timeoutMs} ms`)), timeoutMs);
      };
      arm("the upgrade and the server's initial state and features");
      ws.onopen = () => {
        if (ws.protocol !== SUBPROTOCOL) {
          fail(new ConnectError("Protocol", `server selected subprotocol '${ws.protocol}', not ${SUBPROTOCOL}`));
          return;
        }
        this.session.reopen(this.session.resumes);
      };
      ws.onerror = () => {};
      ws.onclose = (ev: CloseEvent) => {
        const reason = `closed with code ${ev.code}${ev.reason ? ` (${ev.reason})` : ""}`;
        this.dropped(ws, reason);
        fail(
          this.closing
            ? new ConnectError("Aborted", "the connection was closed by the application before it was ready")
            : new ConnectError(
                "Closed",
                `connection failed: ${reason} (browsers do not show the HTTP status of a refused upgrade)`,
              ),
        );
        ended(reason);
      };
      ws.onmessage = (ev: MessageEvent) => {
        if (ws !== this.ws) return;
        this.onMessage(ev.data);
        if (settled || hooked || !this.session.isReady || this.session.link.state !== "held") return;
        hooked = true;
        arm("hook");
        this.runHook().then(
          () => {
            if (settled) return;
            clearTimeout(timer);
            if (this.closing) {
              fail(new ConnectError("Aborted", "the connection was closed by the application before it was ready"));
              return;
            }
            if (ws !== this.ws || this.session.link.state !== "held") {
              fail(new ConnectError("Closed", "the connection was lost while its on-connect hook ran"));
              return;
            }
            settled = true;
            this.session.release();
            this.setStatus({ state: "connected" });
            this.pump();
            resolve({ ended: end });
          },
          (e) => fail(new ConnectError("Hook", `on-connect hook failed: ${e instanceof Error ? e.message : String(e)}`)),
        );
      };
    });
  }

  /** Runs the on-connect hook with a view of this connection whose calls go out while held. */
  private async runHook(): Promise<void> {
    const hook = this.options.onConnect;
    if (!hook) return;
    // The hook's calls must go out ahead of the application's waiting
    // calls; every other member is the connection's own.
    const view = new Proxy(this, {
      get: (target, prop) => {
        if (prop === "call") {
          return (m: MethodDesc, a: unknown[], o?: CallOptions) => target.callWith(m, a, o ?? {}, true);
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    await hook(view);
  }

  /** The transport `ws` ended: the session hears of it once (calls fail or wait). */
  private dropped(ws: WebSocket, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = undefined;
    if (this.options.reconnect && !this.closing) this.session.handleDisconnect(reason);
    else this.session.handleClose(reason);
    this.pump();
  }

  /** @internal */
  setStatus(status: Status): void {
    if (this.statusNow.state === "closed") return;
    this.statusNow = status;
    this.emit("$status", { ...status });
  }

  /** @internal */
  sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve(this.closing);
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve(true);
      };
    });
  }

  /** @internal */
  isClosing(): boolean {
    return this.closing;
  }

  /** The loop ended: closed for good. */
  private finish(reason: string): void {
    this.session.handleClose(reason);
    this.pump();
    this.setStatus({ state: "closed", reason: this.session.closeReason ?? reason });
    this.closedResolve(this.session.closeReason ?? reason);
  }

  // -- messages --

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

  /** Sends what the session queued and delivers what it reported. */
  private pump(): void {
    for (let m = this.session.pollTransmit(); m; m = this.session.pollTransmit()) this.ws?.send(m);
    for (let ev = this.session.pollEvent(); ev; ev = this.session.pollEvent()) this.deliver(ev);
  }

  private deliver(ev: SessionEvent): void {
    const types = this.service.types;
    const depth = this.options.maxDepth ?? DEFAULT_MAX_DEPTH;
    switch (ev.type) {
      case "reply": {
        const p = this.pending.get(ev.call);
        if (!p) return;
        this.pending.delete(ev.call);
        clearTimeout(p.timer);
        const r = ev.result;
        if (r instanceof CallError) return p.reject(r);
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
        return;
      }
      case "state":
        // A new transport's first state: no field of the old one survives.
        if (ev.replaced) this.mirror = {};
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
        return this.emit("$state", this.state);
      case "features":
        return this.emit("$features", this.enabledMethods());
      case "event": {
        const decl = this.service.events[ev.ty];
        if (!decl) return void this.errors.push(`event type ${ev.ty} is not declared by ${this.service.name}`);
        try {
          this.emit(decl.name, decode(types, decl.shape, ev.archive, depth));
        } catch (e) {
          this.errors.push(`event ${decl.name}: ${(e as Error).message}`);
        }
        return;
      }
      case "eventsDropped":
        return this.emit("$dropped", ev.count);
      case "gap":
        return this.emit("$gap", { ...ev.notice });
      case "disconnected":
        return this.emit("$disconnected", ev.reason);
      case "closed":
        return this.emit("$closed", ev.reason);
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
   * in flight, or made while reconnecting, waits; its timeout runs while
   * it waits.
   */
  call(method: MethodDesc, args: unknown[], options: CallOptions = {}): Promise<unknown> {
    return this.callWith(method, args, options, false);
  }

  private callWith(method: MethodDesc, args: unknown[], options: CallOptions, priority: boolean): Promise<unknown> {
    let input: Uint8Array;
    let call: number;
    try {
      input = encode(this.service.types, method.input, args);
    } catch (e) {
      return Promise.reject(new CallError("Encode", `could not encode the call input: ${(e as Error).message}`));
    }
    const timeoutMs = options.timeoutMs ?? this.options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    try {
      call = priority
        ? this.session.startPriorityCall(method.id, input, timeoutMs)
        : this.session.startCall(method.id, input, timeoutMs);
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

  /** The state mirror: every field as the server last sent it (replaced whole on each reconnect). */
  get state(): S {
    return { ...this.mirror } as S;
  }

  /** Where the connection is: connecting, connected, reconnecting (attempt n), closed. */
  get status(): Status {
    return { ...this.statusNow };
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
  /** Called after each state change with the whole mirror (also when a reconnect replaces it). */
  onState(listener: Listener<S>): () => void {
    return this.listen("$state", listener as Listener<never>);
  }
  /** Called when the enabled methods change (also when a reconnect replaces them). */
  onFeatures(listener: Listener<string[]>): () => void {
    return this.listen("$features", listener as Listener<never>);
  }
  /** Called when the server reports dropped events (this connection read too slowly). */
  onEventsDropped(listener: Listener<number>): () => void {
    return this.listen("$dropped", listener as Listener<never>);
  }
  /**
   * Called when topic events were lost (resume): the topic (null: topics
   * beyond the tracked bound) and the count where known. Never silent.
   */
  onGap(listener: Listener<GapNotice>): () => void {
    return this.listen("$gap", listener as Listener<never>);
  }
  /** Called on every status change. */
  onStatus(listener: Listener<Status>): () => void {
    return this.listen("$status", listener as Listener<never>);
  }
  /** Called when a transport drops and a reconnect follows. */
  onDisconnect(listener: Listener<string>): () => void {
    return this.listen("$disconnected", listener as Listener<never>);
  }
  /** Called once when the connection ends for good (see also `closed`). */
  onClose(listener: Listener<string>): () => void {
    return this.listen("$closed", listener as Listener<never>);
  }

  /** Events the server dropped for this connection so far. */
  get eventsDropped(): number {
    return this.session.eventsDropped;
  }
  /** Positioned events dropped as duplicates after a resume. */
  get duplicatesDropped(): number {
    return this.session.duplicatesDropped;
  }
  /** The resume position of `topic`, if tracked. */
  position(topic: string): Position | undefined {
    return this.session.position(topic);
  }
  /** Call ids in use and calls waiting for one (or for a reconnect). */
  get load(): { inFlight: number; waiting: number } {
    return { inFlight: this.session.inFlight, waiting: this.session.waiting };
  }

  /** Closes the connection for good (1000): open calls fail with `Disconnected`, nothing reconnects, status ends `closed`. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    const ws = this.ws;
    ws?.close(1000);
    this.session.handleClose("closed by the application");
    if (ws) this.dropped(ws, "closed by the application");
    this.pump();
    this.wake?.();
  }
}

/** Opens a connection for `service` (see `Connection.open`). */
export function connect<S, E>(url: string, service: ServiceDesc, options?: ConnectOptions<S, E>): Promise<Connection<S, E>> {
  return Connection.open<S, E>(url, service, options);
}
