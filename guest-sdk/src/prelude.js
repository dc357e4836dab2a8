// The madrpc guest API, evaluated once before the user's script.
//
// It defines the frozen global `madrpc` and completes `console`; the value of
// this script is the registry that the plugin dispatches calls through. The
// registry is reachable only from this closure and from the plugin, so a
// script cannot reach around `madrpc.register`.
(() => {
  'use strict';
  const registry = Object.create(null);
  // Set by the plugin just before this script runs; kept private here.
  const runSubcalls = globalThis.__madrpc_run_subcalls;
  delete globalThis.__madrpc_run_subcalls;

  // How long each cacheable function's results may be served from the
  // gateway's cache, in milliseconds; it goes into the module's manifest.
  const cacheTtls = Object.create(null);
  const TTL_UNITS = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  const parseTtl = (name, ttl) => {
    const match = typeof ttl === 'string' ? /^([0-9]+)(ms|s|m|h)$/.exec(ttl) : null;
    const ms = match ? Number(match[1]) * TTL_UNITS[match[2]] : NaN;
    if (!(ms > 0) || !Number.isSafeInteger(ms)) {
      throw new TypeError(`madrpc.register('${name}', fn, { cache }): cache must be a positive duration such as '500ms', '60s', '5m' or '1h', got ${JSON.stringify(ttl)}`);
    }
    return ms;
  };

  const register = (name, fn, options) => {
    if (typeof name !== 'string' || name.length === 0) {
      throw new TypeError('madrpc.register(name, fn): name must be a non-empty string');
    }
    if (name.startsWith('rpc.')) {
      throw new TypeError(`madrpc.register('${name}', fn): names starting with 'rpc.' are reserved by JSON-RPC`);
    }
    if (typeof fn !== 'function') {
      throw new TypeError(`madrpc.register('${name}', fn): fn must be a function, got ${typeof fn}`);
    }
    if (Object.prototype.hasOwnProperty.call(registry, name)) {
      throw new Error(`madrpc.register('${name}', fn): '${name}' is already registered; each name can be registered once`);
    }
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw new TypeError(`madrpc.register('${name}', fn, options): options must be an object such as { cache: '60s' }`);
    }
    for (const key of Object.keys(options || {})) {
      if (key !== 'cache') {
        throw new TypeError(`madrpc.register('${name}', fn, options): unknown option '${key}'; the only option is cache`);
      }
    }
    if (options && options.cache !== undefined) {
      cacheTtls[name] = parseTtl(name, options.cache);
    }
    registry[name] = fn;
  };

  // Sub-calls wait here until the function has nothing left to do but
  // wait; then `flush` hands all of them to the host at once, which runs
  // them concurrently across the grid.
  const pending = [];

  // A failed sub-call. `code` is the JSON-RPC error code, `data` its data.
  class RpcError extends Error {
    constructor(error) {
      // An uncaught RpcError travels up as "RpcError: message"; do not
      // stack the prefix once per level.
      super(String(error.message).replace(/^(RpcError: )+/, ''));
      this.name = 'RpcError';
      this.code = error.code;
      this.data = error.data;
    }
  }

  const enqueue = (method, params) => {
    if (typeof method !== 'string' || method.length === 0) {
      throw new TypeError('madrpc.call(method, params): method must be a non-empty string');
    }
    const entry = { method, params, settled: false };
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    pending.push(entry);
    return entry;
  };

  const flush = () => {
    if (pending.length === 0) return false;
    const batch = pending.splice(0);
    const request = JSON.stringify(batch.map(({ method, params }) => (params === undefined ? { method } : { method, params })));
    const outcomes = JSON.parse(runSubcalls(request));
    batch.forEach((entry, i) => {
      const outcome = outcomes[i];
      entry.settled = true;
      if (outcome && 'ok' in outcome) {
        entry.value = outcome.ok;
        entry.resolve(outcome.ok);
      } else {
        entry.error = new RpcError(outcome ? outcome.error : { code: -32603, message: 'no outcome for a sub-call' });
        entry.reject(entry.error);
      }
    });
    return true;
  };

  const call = (method, params) => enqueue(method, params).promise;

  const callSync = (method, params) => {
    const entry = enqueue(method, params);
    entry.promise.catch(() => {});
    flush();
    if (entry.error) throw entry.error;
    return entry.value;
  };

  Object.defineProperty(globalThis, 'madrpc', {
    value: Object.freeze({ register, call, callSync }),
    enumerable: false,
    writable: false,
    configurable: false,
  });

  // Objects and arrays are printed as JSON rather than "[object Object]".
  const format = (value) => {
    if (value === null || (typeof value !== 'object')) return value;
    if (value instanceof Error) return value.stack ? `${value}\n${value.stack}` : String(value);
    try {
      return JSON.stringify(value);
    } catch {
      return String(value);
    }
  };
  const writeLog = console.log;
  const writeError = console.error;
  const log = (...args) => writeLog(...args.map(format));
  const error = (...args) => writeError(...args.map(format));
  Object.assign(console, { log, info: log, debug: log, error, warn: error });

  return { registry, flush, cacheTtls };
})()
