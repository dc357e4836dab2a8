// Type declarations for the madrpc guest API, for editors and TypeScript
// checking of scripts. madrpc runs the JavaScript itself; these types only
// describe it.

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

/** The madrpc global available to every script. */
export interface Madrpc {
  /**
   * Makes `fn` callable as `name`. JSON-RPC params that are an object are
   * passed as the single argument; an array is spread as positional
   * arguments. The return value (or what a returned Promise resolves to) is
   * the JSON result. Call at the top level of the script, once per name.
   */
  register(name: string, fn: (...args: any[]) => Json | undefined | Promise<Json | undefined>): void;

  /**
   * Calls another registered function, anywhere on the grid. Sub-calls
   * queued together run concurrently. Rejects with an {@link RpcError}.
   */
  call<T = Json>(method: string, params?: Json[] | { [key: string]: Json }): Promise<T>;

  /** Like {@link Madrpc.call}, but waits and returns the result; throws an {@link RpcError}. */
  callSync<T = Json>(method: string, params?: Json[] | { [key: string]: Json }): T;
}

declare global {
  const madrpc: Madrpc;
}
