// URL and URLSearchParams, as the WHATWG URL standard defines them. Parsing,
// serializing and the setters are the `url` crate's; this file keeps a
// URL's parts and its query's name-value list in step.
(native) => {
  'use strict';
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  // WebIDL's USVString: lone surrogates become U+FFFD.
  const usv = (value) => String(value).toWellFormed();
  const HREF = 0, ORIGIN = 1, PROTOCOL = 2, USERNAME = 3, PASSWORD = 4, HOST = 5, HOSTNAME = 6,
    PORT = 7, PATHNAME = 8, SEARCH = 9, HASH = 10;
  const required = (count, args, what) => {
    if (args.length < count) {
      throw new TypeError(`Failed to execute '${what}': ${count} argument${count > 1 ? 's' : ''} required, but only ${args.length} present.`);
    }
  };
  const pairs = (flat) => {
    const list = [];
    for (let i = 0; i < flat.length; i += 2) list.push([flat[i], flat[i + 1]]);
    return list;
  };

  // Private hooks between the two classes.
  let setQuery;
  let params;

  class URLSearchParams {
    #list = [];
    #url = null;

    constructor(init = '') {
      if ((typeof init === 'object' && init !== null) || typeof init === 'function') {
        if (typeof init[Symbol.iterator] === 'function') {
          for (const pair of init) {
            if ((typeof pair !== 'object' || pair === null) && typeof pair !== 'function') {
              throw new TypeError("Failed to construct 'URLSearchParams': The provided value cannot be converted to a sequence.");
            }
            const items = [...pair];
            if (items.length !== 2) {
              throw new TypeError("Failed to construct 'URLSearchParams': Sequence initializer must only contain pair elements");
            }
            this.#list.push([usv(items[0]), usv(items[1])]);
          }
        } else {
          for (const key of Reflect.ownKeys(init)) {
            const descriptor = Reflect.getOwnPropertyDescriptor(init, key);
            if (typeof key === 'string' && descriptor?.enumerable) this.#list.push([usv(key), usv(init[key])]);
          }
        }
      } else {
        const query = usv(init);
        this.#list = pairs(native.formParse(query.startsWith('?') ? query.slice(1) : query));
      }
    }

    #update() {
      if (this.#url) setQuery(this.#url, this.toString());
    }

    get size() { return this.#list.length; }

    append(name, value) {
      required(2, arguments, 'append');
      this.#list.push([usv(name), usv(value)]);
      this.#update();
    }

    delete(name, value = undefined) {
      required(1, arguments, 'delete');
      name = usv(name);
      const match = value === undefined ? ([n]) => n === name : ([n, v]) => n === name && v === usv(value);
      this.#list = this.#list.filter((pair) => !match(pair));
      this.#update();
    }

    get(name) {
      required(1, arguments, 'get');
      name = usv(name);
      return this.#list.find(([n]) => n === name)?.[1] ?? null;
    }

    getAll(name) {
      required(1, arguments, 'getAll');
      name = usv(name);
      return this.#list.filter(([n]) => n === name).map(([, v]) => v);
    }

    has(name, value = undefined) {
      required(1, arguments, 'has');
      name = usv(name);
      return value === undefined
        ? this.#list.some(([n]) => n === name)
        : this.#list.some(([n, v]) => n === name && v === usv(value));
    }

    set(name, value) {
      required(2, arguments, 'set');
      name = usv(name);
      value = usv(value);
      const index = this.#list.findIndex(([n]) => n === name);
      if (index < 0) {
        this.#list.push([name, value]);
      } else {
        this.#list[index][1] = value;
        this.#list = this.#list.filter(([n], i) => i <= index || n !== name);
      }
      this.#update();
    }

    sort() {
      // Stable, by UTF-16 code units, as the standard asks.
      this.#list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      this.#update();
    }

    forEach(callback, thisArg = undefined) {
      required(1, arguments, 'forEach');
      if (typeof callback !== 'function') throw new TypeError("Failed to execute 'forEach': parameter 1 is not a function.");
      for (let i = 0; i < this.#list.length; i++) {
        const [name, value] = this.#list[i];
        callback.call(thisArg, value, name, this);
      }
    }

    *entries() { for (let i = 0; i < this.#list.length; i++) yield [this.#list[i][0], this.#list[i][1]]; }
    *keys() { for (let i = 0; i < this.#list.length; i++) yield this.#list[i][0]; }
    *values() { for (let i = 0; i < this.#list.length; i++) yield this.#list[i][1]; }
    [Symbol.iterator]() { return this.entries(); }

    toString() { return native.formSerialize(this.#list.flat()); }

    static {
      params = {
        attach(url, query) {
          const attached = new URLSearchParams(query);
          attached.#url = url;
          return attached;
        },
        reset(attached, query) {
          attached.#list = pairs(native.formParse(query.startsWith('?') ? query.slice(1) : query));
        },
      };
    }
  }

  const parse = (args) => {
    const [url, base] = args;
    return args.length < 2 || base === undefined ? native.urlParse(usv(url)) : native.urlParse(usv(url), usv(base));
  };

  class URL {
    #parts;
    #params;

    constructor(url, base = undefined) {
      required(1, arguments, 'URL');
      const parts = parse([url, base]);
      if (parts === undefined) throw Object.assign(new TypeError('Invalid URL'), { code: 'ERR_INVALID_URL', input: usv(url) });
      this.#parts = parts;
      this.#params = params.attach(this, parts[SEARCH]);
    }

    static canParse(url, base = undefined) {
      required(1, arguments, 'canParse');
      return parse([url, base]) !== undefined;
    }

    static parse(url, base = undefined) {
      required(1, arguments, 'parse');
      return parse([url, base]) === undefined ? null : new URL(url, base);
    }

    #set(field, value) {
      const parts = native.urlSet(this.#parts[HREF], field, usv(value));
      if (parts === undefined) throw Object.assign(new TypeError('Invalid URL'), { code: 'ERR_INVALID_URL', input: usv(value) });
      this.#parts = parts;
      if (field === 'href' || field === 'search') params.reset(this.#params, parts[SEARCH]);
    }

    get href() { return this.#parts[HREF]; }
    set href(value) { this.#set('href', value); }
    get origin() { return this.#parts[ORIGIN]; }
    get protocol() { return this.#parts[PROTOCOL]; }
    set protocol(value) { this.#set('protocol', value); }
    get username() { return this.#parts[USERNAME]; }
    set username(value) { this.#set('username', value); }
    get password() { return this.#parts[PASSWORD]; }
    set password(value) { this.#set('password', value); }
    get host() { return this.#parts[HOST]; }
    set host(value) { this.#set('host', value); }
    get hostname() { return this.#parts[HOSTNAME]; }
    set hostname(value) { this.#set('hostname', value); }
    get port() { return this.#parts[PORT]; }
    set port(value) { this.#set('port', value); }
    get pathname() { return this.#parts[PATHNAME]; }
    set pathname(value) { this.#set('pathname', value); }
    get search() { return this.#parts[SEARCH]; }
    set search(value) { this.#set('search', value); }
    get searchParams() { return this.#params; }
    get hash() { return this.#parts[HASH]; }
    set hash(value) { this.#set('hash', value); }
    toString() { return this.#parts[HREF]; }
    toJSON() { return this.#parts[HREF]; }

    static {
      setQuery = (url, query) => {
        url.#parts = native.urlSet(url.#parts[HREF], 'search', query) ?? url.#parts;
      };
    }
  }

  for (const [name, value] of Object.entries({ URL, URLSearchParams })) {
    Object.defineProperty(value.prototype, Symbol.toStringTag, { value: name, configurable: true });
    define(name, value);
  }
}
