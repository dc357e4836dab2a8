// crypto.getRandomValues, crypto.randomUUID and crypto.subtle.digest, as the
// W3C Web Cryptography API defines them. Bytes come from the host's entropy
// at call time; digests from the RustCrypto crates.
(native) => {
  'use strict';
  const { DOMException } = native;
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  const typedArrayTag = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array).prototype, Symbol.toStringTag).get;
  const INTEGER_ARRAYS = new Set([
    'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array',
    'Int32Array', 'Uint32Array', 'BigInt64Array', 'BigUint64Array',
  ]);
  const MAX_RANDOM_BYTES = 65536;
  const DIGESTS = ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512'];
  const hex = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

  const bytesOf = (data) => {
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    throw new TypeError("Failed to execute 'digest' on 'SubtleCrypto': parameter 2 is not of type 'ArrayBuffer' or 'ArrayBufferView'.");
  };

  const digestName = (algorithm) => {
    let name = algorithm;
    if (typeof algorithm === 'object' && algorithm !== null) {
      if (algorithm.name === undefined) throw new TypeError("Failed to execute 'digest' on 'SubtleCrypto': Algorithm: name: Missing or not a string");
      name = algorithm.name;
    }
    name = String(name).toUpperCase();
    if (!DIGESTS.includes(name)) throw new DOMException('Unrecognized algorithm name', 'NotSupportedError');
    return name;
  };

  class SubtleCrypto {
    digest(algorithm, data) {
      try {
        if (arguments.length < 2) throw new TypeError("Failed to execute 'digest' on 'SubtleCrypto': 2 arguments required.");
        const name = digestName(algorithm);
        return Promise.resolve(native.digest(name, bytesOf(data)));
      } catch (error) {
        return Promise.reject(error);
      }
    }
  }

  const subtle = new SubtleCrypto();

  class Crypto {
    get subtle() { return subtle; }

    getRandomValues(array) {
      if (arguments.length === 0) throw new TypeError("Failed to execute 'getRandomValues' on 'Crypto': 1 argument required, but only 0 present.");
      if (!ArrayBuffer.isView(array)) {
        throw new TypeError("Failed to execute 'getRandomValues' on 'Crypto': parameter 1 is not of type 'ArrayBufferView'.");
      }
      if (!INTEGER_ARRAYS.has(typedArrayTag.call(array))) {
        throw new DOMException('The data argument must be an integer-type TypedArray', 'TypeMismatchError');
      }
      if (array.byteLength > MAX_RANDOM_BYTES) {
        throw new DOMException(
          `The ArrayBufferView's byte length (${array.byteLength}) exceeds the number of bytes of entropy available via this API (${MAX_RANDOM_BYTES})`,
          'QuotaExceededError',
        );
      }
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(new Uint8Array(native.randomBytes(array.byteLength)));
      return array;
    }

    randomUUID() {
      const b = new Uint8Array(native.randomBytes(16));
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      return `${hex[b[0]]}${hex[b[1]]}${hex[b[2]]}${hex[b[3]]}-${hex[b[4]]}${hex[b[5]]}-${hex[b[6]]}${hex[b[7]]}-`
        + `${hex[b[8]]}${hex[b[9]]}-${hex[b[10]]}${hex[b[11]]}${hex[b[12]]}${hex[b[13]]}${hex[b[14]]}${hex[b[15]]}`;
    }
  }

  for (const [name, value] of Object.entries({ Crypto, SubtleCrypto })) {
    Object.defineProperty(value.prototype, Symbol.toStringTag, { value: name, configurable: true });
    define(name, value);
  }
  define('crypto', new Crypto());
}
