// atob and btoa (HTML's forgiving-base64), over the `base64` crate.
(native) => {
  'use strict';
  const { DOMException } = native;
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  const notLatin1 = /[^\u0000-\u00ff]/;

  function atob(data) {
    if (arguments.length === 0) throw new TypeError('The "data" argument must be specified');
    const text = String(data);
    const decoded = notLatin1.test(text) ? undefined : native.atob(text);
    if (decoded === undefined) {
      throw new DOMException('The string to be decoded is not correctly encoded.', 'InvalidCharacterError');
    }
    return decoded;
  }

  function btoa(data) {
    if (arguments.length === 0) throw new TypeError('The "data" argument must be specified');
    const text = String(data);
    if (notLatin1.test(text)) throw new DOMException('Invalid character', 'InvalidCharacterError');
    return native.btoa(text);
  }

  define('atob', atob);
  define('btoa', btoa);
}
