// One function per web-platform global. Each returns what it observed, as
// JSON; tests/globals.rs compares that with Node's answers for the same
// code, written into the test.

const errorName = (f) => {
  try {
    f();
    return 'no error';
  } catch (e) {
    return e instanceof DOMException ? `DOMException ${e.name} ${e.code}` : e.name;
  }
};

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

madrpc.register('base64', () => ({
  btoa: [btoa('hello, world'), btoa(''), btoa('\u00ff\u00fe\u0000a'), btoa(null)],
  atob: [atob('aGVsbG8sIHdvcmxk'), atob(' aGVs\nbG8= '), atob('YQ'), atob('YR=='), atob('//79')].map((s) => [...s].map((c) => c.charCodeAt(0))),
  errors: [() => atob('YQ='), () => atob('a'), () => atob('a===') , () => atob('*'), () => btoa('\u20ac'), () => atob()].map(errorName),
}));

madrpc.register('url', () => {
  const url = new URL('https://user:pa%20ss@EXAMPLE.com:8080/a/./b/../c?x=1&y=%20z#frag');
  const parts = (u) => [u.href, u.origin, u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash];
  const relative = new URL('../d/e?q#h', 'http://example.org/a/b/c');
  const idn = new URL('https://münchen.de/ä?ö=ü');
  const changed = new URL('http://example.com/path');
  changed.protocol = 'https';
  changed.hostname = 'example.net';
  changed.port = '443';
  changed.pathname = '/new path';
  changed.search = 'a=b c';
  changed.hash = 'top';
  changed.username = 'me';
  const other = new URL('https://a.example/x?k=v');
  other.searchParams.append('k', 'w x');
  other.searchParams.set('n', '1');
  const reparse = new URL('https://a.example/?a=1');
  reparse.search = '?b=2&b=3';
  reparse.href = 'file:///tmp/x.txt';
  return {
    parts: parts(url),
    relative: parts(relative),
    idn: parts(idn),
    changed: parts(changed),
    linked: [other.href, other.search, other.searchParams.getAll('k')],
    reparse: [reparse.href, reparse.origin, reparse.searchParams.toString()],
    json: JSON.stringify({ url: new URL('http://x/y') }),
    canParse: [URL.canParse('http://x'), URL.canParse('nope'), URL.canParse('/p', 'http://x'), URL.canParse('/p')],
    special: ['blob:https://a.example/uuid', 'data:text/plain,hi', 'HTTP://[::1]:80/', 'http://0x7f.1/', 'mailto:a@b.example'].map((s) => {
      const u = new URL(s);
      return [u.href, u.origin, u.host, u.pathname];
    }),
    errors: [() => new URL('nope'), () => new URL('http://exa mple.com'), () => new URL('/p', 'nope'), () => new URL()].map(errorName),
    tag: Object.prototype.toString.call(url),
  };
});

madrpc.register('search_params', () => {
  const params = new URLSearchParams('?a=1&b=2&a=3&c=%20d+e&&f');
  const record = new URLSearchParams({ z: 'last', a: 'first é', '=&': '?' });
  const pairs = new URLSearchParams([['x', '1'], ['y', '2'], ['x', '3']]);
  pairs.delete('x', '3');
  const sorted = new URLSearchParams('z=1&a=2&\uFFFD=3&z=0&a=1&\u00e9=4');
  sorted.sort();
  const seen = [];
  params.forEach((value, name) => seen.push(`${name}=${value}`));
  const set = new URLSearchParams('a=1&b=2&a=3');
  set.set('a', 'x');
  return {
    get: [params.get('a'), params.get('c'), params.get('f'), params.get('missing')],
    getAll: params.getAll('a'),
    has: [params.has('b'), params.has('b', '3'), params.has('b', '2')],
    size: params.size,
    seen,
    entries: [...params],
    keys: [...params.keys()],
    record: record.toString(),
    pairs: pairs.toString(),
    sorted: sorted.toString(),
    set: set.toString(),
    encoded: new URLSearchParams({ q: 'a b&c=d/é~*\'()!' }).toString(),
    errors: [() => new URLSearchParams([['a']]), () => new URLSearchParams([1])].map(errorName),
  };
});

madrpc.register('digest', async () => {
  const encode = (s) => new TextEncoder().encode(s);
  const out = {};
  for (const algorithm of ['SHA-1', 'SHA-256', 'SHA-384', 'SHA-512']) {
    out[algorithm] = [
      hex(await crypto.subtle.digest(algorithm, encode('abc'))),
      hex(await crypto.subtle.digest({ name: algorithm.toLowerCase() }, new ArrayBuffer(0))),
    ];
  }
  const view = new DataView(encode('xxabcxx').buffer, 2, 3);
  out.view = hex(await crypto.subtle.digest('sha-256', view));
  out.rejections = [];
  for (const [algorithm, data] of [['MD5', encode('a')], ['SHA-256', 'abc'], [{}, encode('a')]]) {
    try {
      await crypto.subtle.digest(algorithm, data);
      out.rejections.push('resolved');
    } catch (e) {
      out.rejections.push(e instanceof DOMException ? `DOMException ${e.name}` : e.name);
    }
  }
  out.isPromise = crypto.subtle.digest('MD5', encode('a')).catch(() => {}) instanceof Promise;
  return out;
});

madrpc.register('random', () => {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const words = new Uint32Array(4);
  const same = crypto.getRandomValues(words) === words;
  const offset = new Uint8Array(8);
  crypto.getRandomValues(new Uint8Array(offset.buffer, 2, 4));
  const uuid = crypto.randomUUID();
  return {
    bytes: hex(bytes),
    uuid,
    uuidShape: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid),
    same,
    untouched: [offset[0], offset[1], offset[6], offset[7]],
    bigint: typeof crypto.getRandomValues(new BigUint64Array(1))[0],
    max: crypto.getRandomValues(new Uint8Array(65536)).length,
    errors: [
      () => crypto.getRandomValues(new Float64Array(1)),
      () => crypto.getRandomValues(new DataView(new ArrayBuffer(1))),
      () => crypto.getRandomValues(new Uint8Array(65537)),
      () => crypto.getRandomValues([1, 2]),
    ].map(errorName),
    random: Math.random(),
  };
});

madrpc.register('clone', () => {
  const shared = { n: 1 };
  const original = {
    date: new Date(Date.UTC(2024, 1, 29, 12, 30)),
    regexp: /a+b/gi,
    map: new Map([[shared, 'key is shared'], ['k', shared]]),
    set: new Set([1, 'two', shared]),
    bytes: new Uint16Array([1, 2, 65535]),
    big: 12345678901234567890n,
    boxed: [new Number(3), new String('s'), new Boolean(false)],
    sparse: [1, , 3],
    nested: { a: [shared, shared] },
    error: new RangeError('out of range'),
    special: [NaN, -0, Infinity, undefined, null],
  };
  original.self = original;
  const copy = structuredClone(original);
  const buffer = new Uint8Array([1, 2, 3]).buffer;
  const moved = structuredClone({ buffer }, { transfer: [buffer] });
  class Point { constructor() { this.x = 1; } get y() { return 2; } }
  return {
    distinct: copy !== original && copy.nested !== original.nested,
    cycle: copy.self === copy,
    sharedKept: copy.nested.a[0] === copy.nested.a[1] && copy.map.get('k') === copy.nested.a[0] && [...copy.map.keys()][0] === copy.nested.a[0],
    date: [copy.date instanceof Date, copy.date.toISOString()],
    regexp: [copy.regexp instanceof RegExp, copy.regexp.source, copy.regexp.flags],
    map: [...copy.map.values()].map((v) => (typeof v === 'string' ? v : v.n)),
    set: copy.set.size,
    bytes: [copy.bytes instanceof Uint16Array, Array.from(copy.bytes), copy.bytes.buffer !== original.bytes.buffer],
    big: String(copy.big),
    boxed: copy.boxed.map((b) => [typeof b, b.valueOf()]),
    sparse: [copy.sparse.length, 1 in copy.sparse],
    error: [copy.error instanceof RangeError, copy.error.name, copy.error.message],
    special: [Number.isNaN(copy.special[0]), Object.is(copy.special[1], -0), copy.special[2], copy.special.length, 3 in copy.special],
    classInstance: [Object.getPrototypeOf(structuredClone(new Point())) === Object.prototype, JSON.stringify(structuredClone(new Point()))],
    transfer: [buffer.byteLength, Array.from(new Uint8Array(moved.buffer))],
    errors: [() => structuredClone(() => 1), () => structuredClone({ s: Symbol('s') }), () => structuredClone(new WeakMap()), () => structuredClone()].map(errorName),
  };
});

madrpc.register('performance', () => {
  const start = performance.now();
  let spin = 0;
  for (let i = 0; i < 200000; i++) spin += i % 7;
  const end = performance.now();
  return {
    start,
    monotonic: end > start && spin > 0,
    origin: Math.abs(performance.timeOrigin + end - Date.now()) < 1000,
    tag: Object.prototype.toString.call(performance),
    type: typeof performance.now(),
  };
});

madrpc.register('abort', () => {
  const log = [];
  const controller = new AbortController();
  const { signal } = controller;
  signal.addEventListener('abort', (e) => log.push(`listener ${e.type} ${e.target === signal} ${signal.aborted}`));
  signal.addEventListener('abort', () => log.push('once'), { once: true });
  signal.onabort = (e) => log.push(`onabort ${e.type}`);
  const any = AbortSignal.any([signal, new AbortController().signal]);
  any.addEventListener('abort', () => log.push(`any ${any.reason}`));
  log.push(`before ${signal.aborted} ${signal.reason}`);
  controller.abort('why');
  controller.abort('again');
  log.push(`after ${signal.aborted} ${signal.reason} ${any.aborted} ${any.reason}`);
  const defaulted = new AbortController();
  defaulted.abort();
  const reason = defaulted.signal.reason;
  const ready = AbortSignal.abort();
  let thrown;
  try {
    ready.throwIfAborted();
  } catch (e) {
    thrown = e === ready.reason;
  }
  return {
    log,
    reason: [reason instanceof DOMException, reason instanceof Error, reason.name, reason.message, reason.code],
    thrown,
    notAborted: new AbortController().signal.throwIfAborted() === undefined,
    illegal: errorName(() => new AbortSignal()),
    inherits: signal instanceof EventTarget,
    tags: [Object.prototype.toString.call(signal), Object.prototype.toString.call(controller)],
  };
});

madrpc.register('events', () => {
  const target = new EventTarget();
  const log = [];
  const listener = (e) => log.push(`fn ${e.type} ${e.eventPhase} ${e.currentTarget === target}`);
  target.addEventListener('ping', listener);
  target.addEventListener('ping', listener);
  target.addEventListener('ping', { handleEvent: (e) => log.push(`object ${e.type}`) });
  target.addEventListener('ping', (e) => { e.preventDefault(); log.push(`prevent ${e.defaultPrevented}`); });
  target.addEventListener('ping', (e) => { e.stopImmediatePropagation(); log.push('stop'); });
  target.addEventListener('ping', () => log.push('never'));
  const event = new Event('ping', { cancelable: true });
  const result = target.dispatchEvent(event);
  target.removeEventListener('ping', listener);
  const second = target.dispatchEvent(new Event('ping'));
  const controller = new AbortController();
  target.addEventListener('gone', () => log.push('gone'), { signal: controller.signal });
  controller.abort();
  target.dispatchEvent(new Event('gone'));
  const custom = new CustomEvent('data', { detail: { n: 1 } });
  target.addEventListener('data', (e) => log.push(`detail ${e.detail.n}`));
  target.dispatchEvent(custom);
  target.addEventListener('passive', (e) => { e.preventDefault(); log.push(`passive ${e.defaultPrevented}`); }, { passive: true });
  target.dispatchEvent(new Event('passive', { cancelable: true }));
  class Clock extends EventTarget {}
  const clock = new Clock();
  clock.addEventListener('tick', function (e) { log.push(`subclass ${this === clock} ${e.target === clock}`); });
  clock.dispatchEvent(new Event('tick'));
  return {
    log,
    result,
    second,
    after: [event.eventPhase, event.currentTarget, event.target === target, event.defaultPrevented],
    fresh: [new Event('x').bubbles, new Event('x').cancelable, new Event('x').isTrusted, new Event('x').eventPhase, Event.AT_TARGET],
    errors: [() => target.dispatchEvent({ type: 'ping' }), () => new Event(), () => target.addEventListener('x')].map(errorName),
  };
});

madrpc.register('weakref', () => {
  const target = { name: 'kept' };
  const ref = new WeakRef(target);
  const registry = new FinalizationRegistry(() => {});
  const token = {};
  registry.register(target, 'held', token);
  return {
    deref: ref.deref() === target,
    name: ref.deref().name,
    unregistered: registry.unregister(token),
    again: registry.unregister(token),
    tags: [Object.prototype.toString.call(ref), Object.prototype.toString.call(registry)],
  };
});

madrpc.register('text', () => {
  const bytes = new TextEncoder().encode('a€𝄞');
  return {
    bytes: Array.from(bytes),
    back: new TextDecoder().decode(bytes),
    label: new TextDecoder().encoding,
  };
});

madrpc.register('ahead', async () => ({
  groupBy: Object.groupBy([1, 2, 3, 4], (n) => (n % 2 ? 'odd' : 'even')),
  union: [...new Set([1, 2]).union(new Set([2, 3]))],
  fromAsync: await Array.fromAsync([Promise.resolve(1), 2]),
}));

madrpc.register('present', () =>
  ['atob', 'btoa', 'URL', 'URLSearchParams', 'crypto', 'structuredClone', 'performance', 'AbortController',
    'AbortSignal', 'EventTarget', 'Event', 'CustomEvent', 'DOMException', 'WeakRef', 'FinalizationRegistry',
    'TextEncoder', 'TextDecoder', 'Intl', 'fetch', 'setTimeout', 'setInterval', 'queueMicrotask', 'process', 'require']
    .map((name) => `${name}: ${typeof globalThis[name]}`));

const moment = Date.UTC(2026, 10, 28, 14, 5, 9, 45);

madrpc.register('number_format', () => ({
  toLocale: [(1234567.891).toLocaleString('en-US'), (1234567.891).toLocaleString(), (-0.5).toLocaleString('en'), (1e21).toLocaleString('en-US'),
    (0.000001234).toLocaleString('en-US'), (1.005).toLocaleString('en-US', { maximumFractionDigits: 2 }), (2.5).toLocaleString('en-US', { maximumFractionDigits: 0 }),
    (-2.5).toLocaleString('en-US', { maximumFractionDigits: 0 }), 12345678901234567890n.toLocaleString('en-US'), NaN.toLocaleString('en-US'), (-Infinity).toLocaleString('en-US')],
  options: [
    new Intl.NumberFormat('en-US', { minimumFractionDigits: 2 }).format(1234.5),
    new Intl.NumberFormat('en-US', { maximumSignificantDigits: 3 }).format(123456),
    new Intl.NumberFormat('en-US', { minimumSignificantDigits: 5 }).format(1.5),
    new Intl.NumberFormat('en-US', { minimumIntegerDigits: 3 }).format(7),
    new Intl.NumberFormat('en-US', { useGrouping: false }).format(1234567),
    new Intl.NumberFormat('en-US', { style: 'percent' }).format(0.256),
    new Intl.NumberFormat('en-US', { style: 'percent', maximumFractionDigits: 1 }).format(0.12345),
    new Intl.NumberFormat('en-US', { signDisplay: 'always' }).format(5),
    new Intl.NumberFormat('en-US', { signDisplay: 'exceptZero' }).format(0),
    new Intl.NumberFormat('en-US', { signDisplay: 'never' }).format(-5),
    new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 }).format('1234.5678'),
    new Intl.NumberFormat().format(1000),
    new Intl.NumberFormat('und').format(1234.5),
    new Intl.NumberFormat('de-DE').format(1234567.891),
    new Intl.NumberFormat('fr').format(1234.5),
    new Intl.NumberFormat('en-IN').format(12345678),
  ],
  resolved: new Intl.NumberFormat('en-us', { maximumFractionDigits: 1 }).resolvedOptions().locale,
  errors: [() => new Intl.NumberFormat('en', { maximumFractionDigits: 200 }), () => new Intl.NumberFormat('not a tag!'), () => new Intl.NumberFormat('en', { style: 'bogus' })].map(errorName),
}));

madrpc.register('plural_rules', () => {
  const en = new Intl.PluralRules('en-US');
  const ordinal = new Intl.PluralRules('en-US', { type: 'ordinal' });
  const suffix = { one: 'st', two: 'nd', few: 'rd', other: 'th' };
  return {
    cardinal: [0, 1, 2, 1.5, -1].map((n) => en.select(n)),
    fraction: new Intl.PluralRules('en', { minimumFractionDigits: 1 }).select(1),
    ordinal: [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111].map((n) => `${n}${suffix[ordinal.select(n)]}`),
    categories: [en.resolvedOptions().pluralCategories, ordinal.resolvedOptions().pluralCategories],
    root: new Intl.PluralRules('und').select(1),
    arabic: [0, 1, 2, 3, 11, 100].map((n) => new Intl.PluralRules('ar').select(n)),
  };
});

madrpc.register('collator', () => {
  const words = ['résumé', 'resume', 'Resume', 'apple', 'Zebra', 'zebra', 'äpfel', 'b'];
  return {
    sorted: [...words].sort(new Intl.Collator('en').compare),
    base: new Intl.Collator('en', { sensitivity: 'base' }).compare('a', 'á'),
    accent: new Intl.Collator('en', { sensitivity: 'accent' }).compare('a', 'á'),
    caseOnly: [new Intl.Collator('en', { sensitivity: 'case' }).compare('a', 'A'), new Intl.Collator('en', { sensitivity: 'case' }).compare('a', 'á')],
    numeric: ['item10', 'item2', 'item1'].sort(new Intl.Collator('en', { numeric: true }).compare),
    localeCompare: ['a'.localeCompare('b'), 'b'.localeCompare('a'), 'a'.localeCompare('a'), 'ä'.localeCompare('z', 'de'), 'ä'.localeCompare('z', 'sv')],
  };
});

madrpc.register('date_time_format', () => {
  const date = new Date(moment);
  return {
    toLocale: [date.toLocaleString('en-US'), date.toLocaleDateString('en-US'), date.toLocaleTimeString('en-US'), date.toLocaleString(), new Date(NaN).toLocaleString()],
    styles: ['full', 'long', 'medium', 'short'].map((dateStyle) => new Intl.DateTimeFormat('en-US', { dateStyle, timeZone: 'UTC' }).format(date)),
    times: ['full', 'long', 'medium', 'short'].map((timeStyle) => new Intl.DateTimeFormat('en-US', { timeStyle, timeZone: 'UTC' }).format(date)),
    both: new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeStyle: 'short' }).format(date),
    components: [
      { year: 'numeric', month: 'long', day: 'numeric' },
      { month: 'short', day: 'numeric' },
      { weekday: 'long' },
      { year: 'numeric', month: 'long' },
      { hour: 'numeric', minute: 'numeric' },
      { hour: 'numeric', minute: 'numeric', hour12: false },
      { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric' },
    ].map((options) => new Intl.DateTimeFormat('en-US', options).format(date)),
    defaults: new Intl.DateTimeFormat('en-US').format(date),
    gb: date.toLocaleDateString('en-GB'),
    de: date.toLocaleDateString('de-DE'),
    resolved: (({ locale, calendar, numberingSystem, timeZone }) => [locale, calendar, numberingSystem, timeZone])(new Intl.DateTimeFormat('en-US').resolvedOptions()),
    errors: [() => new Intl.DateTimeFormat('en', { dateStyle: 'short', year: 'numeric' }), () => new Intl.DateTimeFormat('en').format(NaN)].map(errorName),
  };
});
