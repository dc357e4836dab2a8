// performance.now() and performance.timeOrigin (W3C High Resolution Time).
// now() counts milliseconds from the start of the current call, read from
// the host's monotonic clock; the snapshot never fixes it.
(native) => {
  'use strict';
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  class Performance {
    now() { return native.now(); }
    get timeOrigin() { return Date.now() - native.now(); }
    toJSON() { return { timeOrigin: this.timeOrigin }; }
  }
  Object.defineProperty(Performance.prototype, Symbol.toStringTag, { value: 'Performance', configurable: true });
  define('Performance', Performance);
  define('performance', new Performance());
}
