// structuredClone, for the serializable types the guest has (HTML's
// StructuredSerialize): primitives but symbols, wrapper objects, Date,
// RegExp, ArrayBuffer and its views, Map, Set, Error, arrays and plain
// objects, with shared and cyclic references kept. Anything else (a
// function, a symbol, a WeakMap, a Promise...) is a DataCloneError. Only an
// ArrayBuffer can be transferred.
(native) => {
  'use strict';
  const { DOMException } = native;
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  const uncloneable = (value) => {
    let shown;
    try {
      shown = typeof value === 'function' ? String(value) : typeof value === 'symbol' ? value.toString() : `#<${value?.constructor?.name ?? 'Object'}>`;
    } catch {
      shown = 'The value';
    }
    return new DOMException(`${shown} could not be cloned.`, 'DataCloneError');
  };
  // Brand checks that look at internal slots, not at prototypes.
  const is = (check) => (value) => {
    try {
      check(value);
      return true;
    } catch {
      return false;
    }
  };
  const getter = (proto, name) => Object.getOwnPropertyDescriptor(proto, name).get;
  const isDate = is((v) => Date.prototype.getTime.call(v));
  const regExpSource = getter(RegExp.prototype, 'source');
  const isRegExp = is((v) => regExpSource.call(v));
  const mapSize = getter(Map.prototype, 'size');
  const setSize = getter(Set.prototype, 'size');
  const bufferLength = getter(ArrayBuffer.prototype, 'byteLength');
  const dataViewLength = getter(DataView.prototype, 'byteLength');
  const typedArrayTag = getter(Object.getPrototypeOf(Uint8Array).prototype, Symbol.toStringTag);
  const isMap = is((v) => mapSize.call(v));
  const isSet = is((v) => setSize.call(v));
  const isArrayBuffer = is((v) => bufferLength.call(v));
  const isDataView = is((v) => dataViewLength.call(v));
  const isWeak = is((v) => WeakMap.prototype.has.call(v, {})) ;
  const isWeakSet = is((v) => WeakSet.prototype.has.call(v, {}));
  const wrappers = [
    [is((v) => Boolean.prototype.valueOf.call(v)), (v) => new Boolean(Boolean.prototype.valueOf.call(v))],
    [is((v) => Number.prototype.valueOf.call(v)), (v) => new Number(Number.prototype.valueOf.call(v))],
    [is((v) => String.prototype.valueOf.call(v)), (v) => new String(String.prototype.valueOf.call(v))],
    [is((v) => BigInt.prototype.valueOf.call(v)), (v) => Object(BigInt.prototype.valueOf.call(v))],
  ];
  const ERRORS = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };

  const copyBuffer = (buffer) => {
    const length = bufferLength.call(buffer);
    const copy = buffer.resizable ? new ArrayBuffer(length, { maxByteLength: buffer.maxByteLength }) : new ArrayBuffer(length);
    new Uint8Array(copy).set(new Uint8Array(buffer));
    return copy;
  };

  const clone = (value, memory) => {
    if (typeof value === 'symbol' || typeof value === 'function') throw uncloneable(value);
    if (typeof value !== 'object' || value === null) return value;
    if (memory.has(value)) return memory.get(value);
    const keep = (copy) => {
      memory.set(value, copy);
      return copy;
    };
    for (const [test, copy] of wrappers) if (test(value)) return keep(copy(value));
    if (isDate(value)) return keep(new Date(Date.prototype.getTime.call(value)));
    if (isRegExp(value)) return keep(new RegExp(value.source, value.flags));
    if (isArrayBuffer(value)) return keep(copyBuffer(value));
    if (isDataView(value)) {
      const buffer = clone(value.buffer, memory);
      return keep(new DataView(buffer, value.byteOffset, value.byteLength));
    }
    const tag = typedArrayTag.call(value);
    if (tag !== undefined) {
      const buffer = clone(value.buffer, memory);
      return keep(new globalThis[tag](buffer, value.byteOffset, value.length));
    }
    if (isMap(value)) {
      const copy = keep(new Map());
      const entries = [...Map.prototype.entries.call(value)];
      for (const [k, v] of entries) copy.set(clone(k, memory), clone(v, memory));
      return copy;
    }
    if (isSet(value)) {
      const copy = keep(new Set());
      for (const v of [...Set.prototype.values.call(value)]) copy.add(clone(v, memory));
      return copy;
    }
    if (isWeak(value) || isWeakSet(value) || value instanceof Promise || (typeof WeakRef === 'function' && value instanceof WeakRef)) {
      throw uncloneable(value);
    }
    if (value instanceof Error) {
      const name = Object.hasOwn(ERRORS, value.name) ? value.name : 'Error';
      const copy = keep(Object.create(ERRORS[name].prototype));
      const message = Object.getOwnPropertyDescriptor(value, 'message');
      if (message) Object.defineProperty(copy, 'message', { value: String(value.message), writable: true, configurable: true });
      if (value.stack !== undefined) Object.defineProperty(copy, 'stack', { value: String(value.stack), writable: true, configurable: true });
      if (Object.hasOwn(value, 'cause')) Object.defineProperty(copy, 'cause', { value: clone(value.cause, memory), writable: true, configurable: true });
      return copy;
    }
    const copy = keep(Array.isArray(value) ? new Array(value.length) : {});
    for (const key of Object.keys(value)) copy[key] = clone(value[key], memory);
    return copy;
  };

  function structuredClone(value, options = undefined) {
    if (arguments.length === 0) throw new TypeError("Failed to execute 'structuredClone' on 'Window': 1 argument required, but only 0 present.");
    const memory = new Map();
    const transfer = options?.transfer === undefined ? [] : [...options.transfer];
    for (const item of transfer) {
      if (!isArrayBuffer(item)) throw new DOMException('Value not transferable', 'DataCloneError');
      if (memory.has(item)) throw new DOMException('ArrayBuffer at index 1 is a duplicate of an earlier ArrayBuffer.', 'DataCloneError');
      if (item.detached) throw new DOMException('An ArrayBuffer is detached and could not be cloned.', 'DataCloneError');
      memory.set(item, copyBuffer(item));
    }
    const copy = clone(value, memory);
    // The transferred buffers now belong to the copy: detach the originals.
    for (const item of transfer) item.transfer();
    return copy;
  }

  define('structuredClone', structuredClone);
}
