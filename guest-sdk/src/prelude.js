// The madrpc guest API, evaluated once before the user's script.
//
// It defines the frozen global `madrpc` and completes `console`; the value of
// this script is the registry that the plugin dispatches calls through. The
// registry is reachable only from this closure and from the plugin, so a
// script cannot reach around `madrpc.register`.
(() => {
  'use strict';
  const registry = Object.create(null);

  const register = (name, fn) => {
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
    registry[name] = fn;
  };

  Object.defineProperty(globalThis, 'madrpc', {
    value: Object.freeze({ register }),
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

  return registry;
})()
