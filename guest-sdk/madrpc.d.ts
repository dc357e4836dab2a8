// Type declarations for the madrpc guest API, for editors and TypeScript
// checking of scripts. madrpc runs the JavaScript itself; these types only
// describe it.
//
// They also declare the web-platform globals a function can use. Check
// scripts with `"lib": ["ES2024"]` and without "DOM": the DOM library
// declares browser globals (fetch, timers, document) that a function does
// not have, and its declarations of the shared ones clash with these.

/** Any value JSON can carry. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A failed sub-call: a JSON-RPC error as a JavaScript `Error`. */
export interface RpcError extends Error {
  name: 'RpcError';
  /** The JSON-RPC error code, for example -32000 (the function threw). */
  code: number;
  /** Structured details; `data.kind` names the error. */
  data?: { kind: string; [key: string]: Json };
}

/** Options of {@link Madrpc.register}. */
export interface RegisterOptions {
  /**
   * Lets the gateway serve the function's results from its cache for this
   * long: a positive whole number with a unit, `'500ms'`, `'60s'`, `'5m'`
   * or `'1h'`. Results are keyed by module, method and params; errors are
   * never cached. Only for functions whose result depends on their params
   * alone (not on `Date.now()`, `Math.random()` or `fetch`).
   */
  cache?: string;
}

/** The madrpc global available to every script. */
export interface Madrpc {
  /**
   * Makes `fn` callable as `name`. JSON-RPC params that are an object are
   * passed as the single argument; an array is spread as positional
   * arguments. The return value (or what a returned Promise resolves to) is
   * the JSON result. Call at the top level of the script, once per name.
   */
  register(
    name: string,
    fn: (...args: any[]) => Json | undefined | Promise<Json | undefined>,
    options?: RegisterOptions,
  ): void;

  /**
   * Calls another registered function, anywhere on the grid. Sub-calls
   * queued together run concurrently. Rejects with an {@link RpcError}.
   */
  call<T = Json>(method: string, params?: Json[] | { [key: string]: Json }): Promise<T>;

  /** Like {@link Madrpc.call}, but waits and returns the result; throws an {@link RpcError}. */
  callSync<T = Json>(method: string, params?: Json[] | { [key: string]: Json }): T;
}

type BufferSource = ArrayBuffer | ArrayBufferView;

declare global {
  const madrpc: Madrpc;

  // HTML: forgiving-base64 over "binary strings" (one character per byte).
  function atob(data: string): string;
  function btoa(data: string): string;
  function structuredClone<T>(value: T, options?: { transfer?: ArrayBuffer[] }): T;
  function queueMicrotask(callback: () => void): void;

  class DOMException extends Error {
    constructor(message?: string, name?: string);
    readonly name: string;
    readonly code: number;
  }

  class URLSearchParams implements Iterable<[string, string]> {
    constructor(init?: string | Iterable<[string, string]> | Record<string, string> | URLSearchParams);
    readonly size: number;
    append(name: string, value: string): void;
    delete(name: string, value?: string): void;
    get(name: string): string | null;
    getAll(name: string): string[];
    has(name: string, value?: string): boolean;
    set(name: string, value: string): void;
    sort(): void;
    forEach(callback: (value: string, name: string, params: URLSearchParams) => void, thisArg?: unknown): void;
    entries(): IterableIterator<[string, string]>;
    keys(): IterableIterator<string>;
    values(): IterableIterator<string>;
    [Symbol.iterator](): IterableIterator<[string, string]>;
    toString(): string;
  }

  class URL {
    constructor(url: string | URL, base?: string | URL);
    static canParse(url: string | URL, base?: string | URL): boolean;
    static parse(url: string | URL, base?: string | URL): URL | null;
    href: string;
    readonly origin: string;
    protocol: string;
    username: string;
    password: string;
    host: string;
    hostname: string;
    port: string;
    pathname: string;
    search: string;
    readonly searchParams: URLSearchParams;
    hash: string;
    toString(): string;
    toJSON(): string;
  }

  interface SubtleCrypto {
    /** SHA-1, SHA-256, SHA-384 or SHA-512. */
    digest(algorithm: string | { name: string }, data: BufferSource): Promise<ArrayBuffer>;
  }
  interface Crypto {
    readonly subtle: SubtleCrypto;
    /** Fills an integer typed array (at most 65,536 bytes) from host entropy. */
    getRandomValues<T extends Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array>(array: T): T;
    randomUUID(): `${string}-${string}-${string}-${string}-${string}`;
  }
  const crypto: Crypto;

  interface Performance {
    /** Milliseconds since the start of the current call. */
    now(): number;
    readonly timeOrigin: number;
    toJSON(): { timeOrigin: number };
  }
  const performance: Performance;

  interface EventInit {
    bubbles?: boolean;
    cancelable?: boolean;
    composed?: boolean;
  }
  class Event {
    constructor(type: string, init?: EventInit);
    static readonly NONE: 0;
    static readonly CAPTURING_PHASE: 1;
    static readonly AT_TARGET: 2;
    static readonly BUBBLING_PHASE: 3;
    readonly type: string;
    readonly bubbles: boolean;
    readonly cancelable: boolean;
    readonly composed: boolean;
    readonly defaultPrevented: boolean;
    readonly eventPhase: number;
    readonly isTrusted: boolean;
    readonly target: EventTarget | null;
    readonly currentTarget: EventTarget | null;
    readonly timeStamp: number;
    cancelBubble: boolean;
    returnValue: boolean;
    composedPath(): EventTarget[];
    preventDefault(): void;
    stopPropagation(): void;
    stopImmediatePropagation(): void;
  }
  class CustomEvent<T = unknown> extends Event {
    constructor(type: string, init?: EventInit & { detail?: T });
    readonly detail: T;
  }
  type EventListenerOrObject = ((event: Event) => void) | { handleEvent(event: Event): void };
  interface AddEventListenerOptions {
    capture?: boolean;
    once?: boolean;
    passive?: boolean;
    signal?: AbortSignal;
  }
  class EventTarget {
    constructor();
    addEventListener(type: string, listener: EventListenerOrObject | null, options?: boolean | AddEventListenerOptions): void;
    removeEventListener(type: string, listener: EventListenerOrObject | null, options?: boolean | { capture?: boolean }): void;
    dispatchEvent(event: Event): boolean;
  }
  class AbortSignal extends EventTarget {
    private constructor();
    /** An already aborted signal. (`AbortSignal.timeout` needs timers, which a function does not have.) */
    static abort(reason?: unknown): AbortSignal;
    static any(signals: Iterable<AbortSignal>): AbortSignal;
    readonly aborted: boolean;
    readonly reason: unknown;
    onabort: ((this: AbortSignal, event: Event) => void) | null;
    throwIfAborted(): void;
  }
  class AbortController {
    constructor();
    readonly signal: AbortSignal;
    abort(reason?: unknown): void;
  }

  class TextEncoder {
    readonly encoding: 'utf-8';
    encode(input?: string): Uint8Array;
  }
  class TextDecoder {
    constructor(label?: 'utf-8', options?: { fatal?: boolean; ignoreBOM?: boolean });
    readonly encoding: string;
    decode(input?: BufferSource): string;
  }
}
