// DOMException, Event, EventTarget, AbortController and AbortSignal, as the
// WHATWG DOM standard and WebIDL define them. No event is ever fired by the
// platform: a function fires its own, and `AbortController#abort` fires
// `abort`. Evaluated once at build time; the value is a function of the
// native helpers.
(native) => {
  'use strict';
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });

  // Legacy numeric codes, by name (WebIDL's table).
  const codes = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
    SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
    TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, URLMismatchError: 21,
    QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25,
  };

  class DOMException extends Error {
    #name;
    constructor(message = '', name = 'Error') {
      super(String(message));
      this.#name = String(name);
    }
    get name() { return this.#name; }
    get code() { return codes[this.#name] ?? 0; }
  }
  Object.entries(codes).forEach(([name, code]) => {
    const constant = name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase().replace(/_ERROR$/, '_ERR');
    Object.defineProperty(DOMException, constant, { value: code, enumerable: true });
    Object.defineProperty(DOMException.prototype, constant, { value: code, enumerable: true });
  });
  native.DOMException = DOMException;

  // Event's internals, reachable only from EventTarget#dispatchEvent.
  let internals;

  class Event {
    #type; #bubbles; #cancelable; #composed; #timeStamp;
    #target = null; #currentTarget = null; #phase = 0;
    #canceled = false; #stop = false; #stopNow = false; #dispatching = false; #passive = false;

    constructor(type, init = undefined) {
      if (arguments.length === 0) throw new TypeError("Failed to construct 'Event': 1 argument required, but only 0 present.");
      if (init !== undefined && init !== null && typeof init !== 'object' && typeof init !== 'function') {
        throw new TypeError("Failed to construct 'Event': the event init is not an object");
      }
      this.#type = String(type);
      this.#bubbles = Boolean(init?.bubbles);
      this.#cancelable = Boolean(init?.cancelable);
      this.#composed = Boolean(init?.composed);
      this.#timeStamp = native.now();
    }

    get type() { return this.#type; }
    get bubbles() { return this.#bubbles; }
    get cancelable() { return this.#cancelable; }
    get composed() { return this.#composed; }
    get timeStamp() { return this.#timeStamp; }
    get isTrusted() { return false; }
    get target() { return this.#target; }
    get srcElement() { return this.#target; }
    get currentTarget() { return this.#currentTarget; }
    get eventPhase() { return this.#phase; }
    get defaultPrevented() { return this.#canceled; }
    get returnValue() { return !this.#canceled; }
    set returnValue(value) { if (!value) this.preventDefault(); }
    get cancelBubble() { return this.#stop; }
    set cancelBubble(value) { if (value) this.#stop = true; }
    composedPath() { return this.#dispatching && this.#currentTarget ? [this.#currentTarget] : []; }
    preventDefault() { if (this.#cancelable && !this.#passive) this.#canceled = true; }
    stopPropagation() { this.#stop = true; }
    stopImmediatePropagation() { this.#stop = true; this.#stopNow = true; }

    static {
      internals = {
        isEvent: (event) => #type in event,
        dispatching: (event) => event.#dispatching,
        begin(event, target) {
          event.#dispatching = true;
          event.#target = target;
          event.#currentTarget = target;
          event.#phase = 2;
        },
        stoppedNow: (event) => event.#stopNow,
        passive(event, flag) { event.#passive = flag; },
        end(event) {
          event.#dispatching = false;
          event.#currentTarget = null;
          event.#phase = 0;
          event.#stop = false;
          event.#stopNow = false;
        },
      };
    }
  }
  for (const [name, value] of [['NONE', 0], ['CAPTURING_PHASE', 1], ['AT_TARGET', 2], ['BUBBLING_PHASE', 3]]) {
    Object.defineProperty(Event, name, { value, enumerable: true });
    Object.defineProperty(Event.prototype, name, { value, enumerable: true });
  }

  class CustomEvent extends Event {
    #detail;
    constructor(type, init = undefined) {
      if (arguments.length === 0) throw new TypeError("Failed to construct 'CustomEvent': 1 argument required, but only 0 present.");
      super(type, init);
      this.#detail = init?.detail ?? null;
    }
    get detail() { return this.#detail; }
  }

  const flatten = (options) => (typeof options === 'object' && options !== null ? Boolean(options.capture) : Boolean(options));

  // What to report when a listener throws: the standard "reports the
  // exception" instead of handing it to dispatchEvent's caller.
  const report = (error) => {
    try {
      console.error('Uncaught exception in an event listener or microtask:', error);
    } catch {
      // Reporting must not break dispatch.
    }
  };

  // queueMicrotask: a job on the same queue as Promise reactions, which a
  // call drains before it returns.
  function queueMicrotask(callback) {
    if (typeof callback !== 'function') {
      throw new TypeError("Failed to execute 'queueMicrotask': parameter 1 is not of type 'Function'.");
    }
    Promise.resolve().then(() => {
      try {
        callback();
      } catch (error) {
        report(error);
      }
    });
  }
  define('queueMicrotask', queueMicrotask);

  class EventTarget {
    #listeners = new Map();

    addEventListener(type, callback, options = undefined) {
      if (arguments.length < 2) throw new TypeError("Failed to execute 'addEventListener' on 'EventTarget': 2 arguments required.");
      if (callback === null || callback === undefined) return;
      if (typeof callback !== 'function' && typeof callback !== 'object') {
        throw new TypeError("Failed to execute 'addEventListener' on 'EventTarget': The callback provided as parameter 2 is not an object.");
      }
      type = String(type);
      const capture = flatten(options);
      const object = typeof options === 'object' && options !== null;
      const once = object && Boolean(options.once);
      const passive = object && Boolean(options.passive);
      const signal = object ? options.signal : undefined;
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeError("Failed to execute 'addEventListener' on 'EventTarget': member signal is not of type AbortSignal.");
      }
      if (signal?.aborted) return;
      let list = this.#listeners.get(type);
      if (!list) this.#listeners.set(type, (list = []));
      if (list.some((l) => l.callback === callback && l.capture === capture)) return;
      const listener = { callback, capture, once, passive, removed: false };
      list.push(listener);
      signal?.addEventListener('abort', () => this.#remove(type, listener));
    }

    removeEventListener(type, callback, options = undefined) {
      if (arguments.length < 2) throw new TypeError("Failed to execute 'removeEventListener' on 'EventTarget': 2 arguments required.");
      const capture = flatten(options);
      const list = this.#listeners.get(String(type));
      const listener = list?.find((l) => l.callback === callback && l.capture === capture);
      if (listener) this.#remove(String(type), listener);
    }

    #remove(type, listener) {
      listener.removed = true;
      const list = this.#listeners.get(type);
      const index = list ? list.indexOf(listener) : -1;
      if (index >= 0) list.splice(index, 1);
    }

    dispatchEvent(event) {
      if (!(typeof event === 'object' && event !== null && internals.isEvent(event))) {
        throw new TypeError("Failed to execute 'dispatchEvent' on 'EventTarget': parameter 1 is not of type 'Event'.");
      }
      if (internals.dispatching(event)) {
        throw new DOMException("Failed to execute 'dispatchEvent' on 'EventTarget': The event is already being dispatched.", 'InvalidStateError');
      }
      internals.begin(event, this);
      try {
        for (const listener of [...(this.#listeners.get(event.type) ?? [])]) {
          if (listener.removed) continue;
          if (listener.once) this.#remove(event.type, listener);
          internals.passive(event, listener.passive);
          try {
            const { callback } = listener;
            if (typeof callback === 'function') {
              callback.call(this, event);
            } else if (typeof callback.handleEvent === 'function') {
              callback.handleEvent(event);
            } else {
              throw new TypeError("'handleEvent' property of the event listener is not callable.");
            }
          } catch (error) {
            report(error);
          }
          internals.passive(event, false);
          if (internals.stoppedNow(event)) break;
        }
      } finally {
        internals.end(event);
      }
      return !event.defaultPrevented;
    }
  }

  // AbortSignal's internals, reachable from AbortController and the
  // static constructors only.
  let signals;

  class AbortSignal extends EventTarget {
    #aborted = false;
    #reason = undefined;
    #handler = null;
    #handlerAdded = false;
    #dependents = [];
    #sources = null;

    constructor(key = undefined) {
      if (key !== signals) throw new TypeError('Illegal constructor');
      super();
    }

    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }
    throwIfAborted() { if (this.#aborted) throw this.#reason; }
    get onabort() { return this.#handler; }
    set onabort(handler) {
      this.#handler = typeof handler === 'function' || (typeof handler === 'object' && handler !== null) ? handler : null;
      if (this.#handler && !this.#handlerAdded) {
        this.#handlerAdded = true;
        this.addEventListener('abort', (event) => {
          const current = this.#handler;
          if (typeof current === 'function') current.call(this, event);
        });
      }
    }

    static abort(reason = undefined) {
      const signal = new AbortSignal(signals);
      signal.#aborted = true;
      signal.#reason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
      return signal;
    }

    static any(list) {
      const sources = [...list];
      for (const source of sources) {
        if (!(source instanceof AbortSignal)) throw new TypeError("Failed to execute 'any' on 'AbortSignal': member is not of type AbortSignal.");
      }
      const signal = new AbortSignal(signals);
      const aborted = sources.find((source) => source.#aborted);
      if (aborted) {
        signal.#aborted = true;
        signal.#reason = aborted.#reason;
        return signal;
      }
      // A dependent signal follows the signals it depends on, never
      // another dependent one.
      signal.#sources = sources.flatMap((source) => source.#sources ?? [source]);
      for (const source of signal.#sources) source.#dependents.push(signal);
      return signal;
    }

    static {
      signals = {
        create: () => new AbortSignal(signals),
        abort(signal, reason) {
          if (signal.#aborted) return;
          signal.#aborted = true;
          signal.#reason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
          const dependents = signal.#dependents.filter((dependent) => !dependent.#aborted);
          for (const dependent of dependents) {
            dependent.#aborted = true;
            dependent.#reason = signal.#reason;
          }
          signal.dispatchEvent(new Event('abort'));
          for (const dependent of dependents) dependent.dispatchEvent(new Event('abort'));
        },
      };
    }
  }

  class AbortController {
    #signal = signals.create();
    get signal() { return this.#signal; }
    abort(reason = undefined) { signals.abort(this.#signal, reason); }
  }

  for (const [name, value] of Object.entries({ DOMException, Event, CustomEvent, EventTarget, AbortSignal, AbortController })) {
    Object.defineProperty(value.prototype, Symbol.toStringTag, { value: name, configurable: true });
    define(name, value);
  }
}
