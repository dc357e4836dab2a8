// Intl.NumberFormat, DateTimeFormat, PluralRules and Collator (ECMA-402) and
// the toLocaleString and localeCompare methods that use them, over ICU4X.
// Dates are shown in UTC, the only time zone a function has.
(native) => {
  'use strict';
  const define = (target, name, value) =>
    Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
  const DEFAULT_LOCALE = 'en-US';

  const canonical = (tag) => {
    if (typeof tag !== 'string' && (typeof tag !== 'object' || tag === null)) {
      throw new TypeError('Language ID should be string or object.');
    }
    const result = native.intlLocale(String(tag));
    if (result === undefined) throw new RangeError(`Incorrect locale information provided: ${String(tag)}`);
    return result;
  };
  const canonicalList = (locales) => {
    if (locales === undefined) return [];
    const list = typeof locales === 'string' ? [locales] : [...Object(locales)];
    return [...new Set(list.map(canonical))];
  };
  // Data comes through the tag's parents down to the root locale, so every
  // well-formed tag is served; the first one requested is the one used.
  const resolveLocale = (locales) => canonicalList(locales)[0] ?? DEFAULT_LOCALE;

  const toOptions = (options) => {
    if (options === undefined) return Object.create(null);
    if (options === null) throw new TypeError('Cannot convert null to object');
    return Object(options);
  };
  const getOption = (options, name, allowed, fallback) => {
    const value = options[name];
    if (value === undefined) return fallback;
    if (allowed === 'boolean') return Boolean(value);
    const text = String(value);
    if (!allowed.includes(text)) throw new RangeError(`Value ${text} out of range for Intl options property ${name}`);
    return text;
  };
  const getNumber = (options, name, min, max, fallback) => {
    const value = options[name];
    if (value === undefined) return fallback;
    const number = Number(value);
    if (!Number.isFinite(number) || number < min || number > max) throw new RangeError(`${name} value is out of range.`);
    return Math.floor(number);
  };

  // ECMA-402's digit options: [minInteger, minFraction, maxFraction, minSignificant, maxSignificant].
  const digitOptions = (options, minFractionDefault, maxFractionDefault) => {
    const minInteger = getNumber(options, 'minimumIntegerDigits', 1, 21, 1);
    const minSig = options.minimumSignificantDigits;
    const maxSig = options.maximumSignificantDigits;
    let minFraction = getNumber(options, 'minimumFractionDigits', 0, 100, undefined);
    let maxFraction = getNumber(options, 'maximumFractionDigits', 0, 100, undefined);
    if (minSig !== undefined || maxSig !== undefined) {
      const min = getNumber(options, 'minimumSignificantDigits', 1, 21, 1);
      const max = getNumber(options, 'maximumSignificantDigits', min, 21, 21);
      return { minInteger, significant: [min, max], list: [minInteger, 0, 0, min, max] };
    }
    if (minFraction === undefined && maxFraction === undefined) {
      minFraction = minFractionDefault;
      maxFraction = maxFractionDefault;
    } else if (minFraction === undefined) {
      minFraction = Math.min(minFractionDefault, maxFraction);
    } else if (maxFraction === undefined) {
      maxFraction = Math.max(maxFractionDefault, minFraction);
    } else if (minFraction > maxFraction) {
      throw new RangeError('maximumFractionDigits value is out of range.');
    }
    return { minInteger, minFraction, maxFraction, list: [minInteger, minFraction, maxFraction, 0, 0] };
  };
  const digitsResolved = (digits) => (digits.significant
    ? { minimumIntegerDigits: digits.minInteger, minimumSignificantDigits: digits.significant[0], maximumSignificantDigits: digits.significant[1] }
    : { minimumIntegerDigits: digits.minInteger, minimumFractionDigits: digits.minFraction, maximumFractionDigits: digits.maxFraction });

  const bound = new WeakMap();
  const boundMethod = (self, make) => {
    if (!bound.has(self)) bound.set(self, make());
    return bound.get(self);
  };

  class NumberFormat {
    #locale; #style; #digits; #grouping; #sign;

    constructor(locales = undefined, options = undefined) {
      options = toOptions(options);
      this.#locale = resolveLocale(locales);
      this.#style = getOption(options, 'style', ['decimal', 'percent', 'currency', 'unit'], 'decimal');
      if (this.#style === 'currency' || this.#style === 'unit') {
        throw new RangeError(`Intl.NumberFormat style '${this.#style}' is not available in madrpc; format the number and add the ${this.#style} yourself`);
      }
      if (getOption(options, 'notation', ['standard', 'scientific', 'engineering', 'compact'], 'standard') !== 'standard') {
        throw new RangeError("Intl.NumberFormat supports notation 'standard' only in madrpc");
      }
      this.#digits = digitOptions(options, 0, this.#style === 'percent' ? 0 : 3);
      const grouping = options.useGrouping;
      this.#grouping = grouping === undefined || grouping === 'auto' ? 'auto'
        : grouping === false || grouping === 'false' ? 'never'
          : grouping === true || grouping === 'always' || grouping === 'true' ? 'always'
            : grouping === 'min2' ? 'min2' : 'auto';
      this.#sign = getOption(options, 'signDisplay', ['auto', 'never', 'always', 'exceptZero', 'negative'], 'auto');
    }

    get format() {
      return boundMethod(this, () => (value) => this.#format(value));
    }

    #format(value) {
      const percent = this.#style === 'percent';
      const suffix = percent ? '%' : '';
      if (typeof value === 'bigint') {
        return native.formatNumber(this.#locale, undefined, String(value), this.#digits.list, [this.#style, this.#grouping, this.#sign]) + suffix;
      }
      const number = Number(value);
      if (Number.isNaN(number)) return `NaN${suffix}`;
      if (!Number.isFinite(number)) {
        const negative = number < 0;
        const sign = this.#sign === 'never' ? '' : negative ? '-' : this.#sign === 'always' || this.#sign === 'exceptZero' ? '+' : '';
        return `${sign}∞${suffix}`;
      }
      return native.formatNumber(this.#locale, number, undefined, this.#digits.list, [this.#style, this.#grouping, this.#sign]) + suffix;
    }

    resolvedOptions() {
      return {
        locale: this.#locale, numberingSystem: 'latn', style: this.#style, ...digitsResolved(this.#digits),
        useGrouping: this.#grouping === 'never' ? false : this.#grouping, notation: 'standard',
        signDisplay: this.#sign, roundingMode: 'halfExpand',
      };
    }

    static supportedLocalesOf(locales) { return canonicalList(locales); }
  }

  class PluralRules {
    #locale; #type; #digits;

    constructor(locales = undefined, options = undefined) {
      if (new.target === undefined) throw new TypeError("Constructor Intl.PluralRules requires 'new'");
      options = toOptions(options);
      this.#locale = resolveLocale(locales);
      this.#type = getOption(options, 'type', ['cardinal', 'ordinal'], 'cardinal');
      this.#digits = digitOptions(options, 0, 3);
    }

    select(value) {
      const number = Number(value);
      if (!Number.isFinite(number)) return 'other';
      return native.pluralSelect(this.#locale, this.#type === 'ordinal', number, this.#digits.list);
    }

    resolvedOptions() {
      return {
        locale: this.#locale, type: this.#type, ...digitsResolved(this.#digits),
        pluralCategories: native.pluralCategories(this.#locale, this.#type === 'ordinal'), roundingMode: 'halfExpand',
      };
    }

    static supportedLocalesOf(locales) { return canonicalList(locales); }
  }

  class Collator {
    #locale; #usage; #sensitivity; #ignorePunctuation; #numeric; #caseFirst;

    constructor(locales = undefined, options = undefined) {
      options = toOptions(options);
      this.#locale = resolveLocale(locales);
      this.#usage = getOption(options, 'usage', ['sort', 'search'], 'sort');
      this.#sensitivity = getOption(options, 'sensitivity', ['base', 'accent', 'case', 'variant'], 'variant');
      this.#ignorePunctuation = getOption(options, 'ignorePunctuation', 'boolean', false);
      this.#numeric = getOption(options, 'numeric', 'boolean', false);
      this.#caseFirst = getOption(options, 'caseFirst', ['upper', 'lower', 'false'], 'false');
    }

    get compare() {
      return boundMethod(this, () => (left, right) =>
        native.compare(this.#locale, this.#sensitivity, this.#numeric, this.#caseFirst, String(left), String(right)));
    }

    resolvedOptions() {
      return {
        locale: this.#locale, usage: this.#usage, sensitivity: this.#sensitivity, ignorePunctuation: this.#ignorePunctuation,
        collation: 'default', numeric: this.#numeric, caseFirst: this.#caseFirst,
      };
    }

    static supportedLocalesOf(locales) { return canonicalList(locales); }
  }

  const DATE_FIELDS = ['weekday', 'year', 'month', 'day'];
  const TIME_FIELDS = ['hour', 'minute', 'second', 'fractionalSecondDigits'];
  const STYLES = ['full', 'long', 'medium', 'short'];
  // Date-field combinations ICU4X formats, for each set of requested fields.
  const FIELD_SETS = { Y: 'Y', M: 'M', D: 'D', E: 'E', YM: 'YM', MD: 'MD', YMD: 'YMD', DE: 'DE', MDE: 'MDE', YMDE: 'YMDE', YD: 'YMD', YE: 'YMDE', ME: 'MDE', YDE: 'YMDE', YME: 'YMDE' };
  const UTC_NAMES = ['utc', 'etc/utc', 'gmt', 'etc/gmt', 'etc/universal', 'universal', 'etc/zulu', 'zulu'];

  let dateDefaults = ['any', 'date'];

  class DateTimeFormat {
    #locale; #resolved; #native; #suffix;

    constructor(locales = undefined, options = undefined) {
      // Date#toLocale*String ask for other defaults than the constructor.
      const [required, defaults] = dateDefaults;
      dateDefaults = ['any', 'date'];
      options = toOptions(options);
      this.#locale = resolveLocale(locales);
      const zone = options.timeZone;
      if (zone !== undefined && !UTC_NAMES.includes(String(zone).toLowerCase())) {
        throw new RangeError(`Time zone ${String(zone)} is not available: madrpc functions show dates in UTC`);
      }
      const picked = {
        weekday: getOption(options, 'weekday', ['narrow', 'short', 'long'], undefined),
        year: getOption(options, 'year', ['2-digit', 'numeric'], undefined),
        month: getOption(options, 'month', ['2-digit', 'numeric', 'narrow', 'short', 'long'], undefined),
        day: getOption(options, 'day', ['2-digit', 'numeric'], undefined),
        hour: getOption(options, 'hour', ['2-digit', 'numeric'], undefined),
        minute: getOption(options, 'minute', ['2-digit', 'numeric'], undefined),
        second: getOption(options, 'second', ['2-digit', 'numeric'], undefined),
        fractionalSecondDigits: getNumber(options, 'fractionalSecondDigits', 1, 3, undefined),
      };
      const hour12 = options.hour12 === undefined ? undefined : Boolean(options.hour12);
      const hourCycle = getOption(options, 'hourCycle', ['h11', 'h12', 'h23', 'h24'], undefined);
      const dateStyle = getOption(options, 'dateStyle', STYLES, undefined);
      const timeStyle = getOption(options, 'timeStyle', STYLES, undefined);
      const has = (names) => names.some((name) => picked[name] !== undefined);
      if ((dateStyle || timeStyle) && has([...DATE_FIELDS, ...TIME_FIELDS])) {
        throw new TypeError("Can't set option dateStyle or timeStyle together with date or time components");
      }
      if (!dateStyle && !timeStyle) {
        // ECMA-402's ToDateTimeOptions.
        const needDefaults = !(required !== 'time' && has(DATE_FIELDS)) && !(required !== 'date' && has(TIME_FIELDS));
        if (needDefaults && defaults !== 'time') Object.assign(picked, { year: 'numeric', month: 'numeric', day: 'numeric' });
        if (needDefaults && defaults !== 'date') Object.assign(picked, { hour: 'numeric', minute: 'numeric', second: 'numeric' });
      }
      const cycle = hour12 === undefined ? (hourCycle === undefined ? '' : hourCycle === 'h11' || hourCycle === 'h12' ? 'h12' : 'h23') : hour12 ? 'h12' : 'h23';
      let fields = '';
      let length = 'short';
      let year = 'full';
      let time = '';
      this.#suffix = '';
      if (dateStyle || timeStyle) {
        if (dateStyle) {
          fields = dateStyle === 'full' ? 'YMDE' : 'YMD';
          length = dateStyle === 'full' ? 'long' : dateStyle;
          year = dateStyle === 'short' ? 'auto' : 'full';
        } else {
          length = 'medium';
        }
        if (timeStyle) {
          time = timeStyle === 'short' ? 'minute' : 'second';
          this.#suffix = timeStyle === 'full' ? ' Coordinated Universal Time' : timeStyle === 'long' ? ' UTC' : '';
        }
      } else {
        const key = `${picked.year ? 'Y' : ''}${picked.month ? 'M' : ''}${picked.day ? 'D' : ''}${picked.weekday ? 'E' : ''}`;
        fields = FIELD_SETS[key] ?? '';
        const wordy = (value) => value === 'long';
        const short = (value) => value === 'short' || value === 'narrow';
        length = wordy(picked.month) || wordy(picked.weekday) ? 'long' : short(picked.month) || short(picked.weekday) ? 'medium' : 'short';
        year = picked.year === '2-digit' ? 'auto' : 'full';
        time = picked.fractionalSecondDigits ? String(picked.fractionalSecondDigits)
          : picked.second ? 'second' : picked.minute ? 'minute' : picked.hour ? 'hour' : '';
      }
      this.#native = [fields, length, year, time, cycle];
      this.#resolved = { locale: this.#locale, calendar: 'gregory', numberingSystem: 'latn', timeZone: 'UTC' };
      if (time) Object.assign(this.#resolved, { hourCycle: cycle === 'h23' ? 'h23' : 'h12', hour12: cycle !== 'h23' });
      if (dateStyle || timeStyle) {
        Object.assign(this.#resolved, dateStyle ? { dateStyle } : {}, timeStyle ? { timeStyle } : {});
      } else {
        for (const name of [...DATE_FIELDS, ...TIME_FIELDS]) if (picked[name] !== undefined) this.#resolved[name] = picked[name];
      }
    }

    get format() {
      return boundMethod(this, () => (date = undefined) => {
        const time = date === undefined ? Date.now() : Number(date);
        if (!Number.isFinite(time)) throw new RangeError('Invalid time value');
        return native.formatDate(this.#locale, time, this.#native) + this.#suffix;
      });
    }

    resolvedOptions() { return { ...this.#resolved }; }

    static supportedLocalesOf(locales) { return canonicalList(locales); }
  }

  const Intl = {};
  for (const [name, value] of Object.entries({ NumberFormat, DateTimeFormat, PluralRules, Collator })) {
    Object.defineProperty(value.prototype, Symbol.toStringTag, { value: `Intl.${name}`, configurable: true });
    define(Intl, name, value);
  }
  define(Intl, 'getCanonicalLocales', (locales) => canonicalList(locales));
  Object.defineProperty(Intl, Symbol.toStringTag, { value: 'Intl', configurable: true });
  define(globalThis, 'Intl', Intl);

  const thisNumber = Number.prototype.valueOf;
  const thisBigInt = BigInt.prototype.valueOf;
  const thisTime = Date.prototype.getTime;
  define(Number.prototype, 'toLocaleString', function toLocaleString(locales = undefined, options = undefined) {
    return new NumberFormat(locales, options).format(thisNumber.call(this));
  });
  define(BigInt.prototype, 'toLocaleString', function toLocaleString(locales = undefined, options = undefined) {
    return new NumberFormat(locales, options).format(thisBigInt.call(this));
  });
  const dateMethod = (required, defaults) => function toLocaleString(locales = undefined, options = undefined) {
    const time = thisTime.call(this);
    if (Number.isNaN(time)) return 'Invalid Date';
    dateDefaults = [required, defaults];
    return new DateTimeFormat(locales, options).format(time);
  };
  define(Date.prototype, 'toLocaleString', dateMethod('any', 'all'));
  define(Date.prototype, 'toLocaleDateString', dateMethod('date', 'date'));
  define(Date.prototype, 'toLocaleTimeString', dateMethod('time', 'time'));
  define(String.prototype, 'localeCompare', function localeCompare(that, locales = undefined, options = undefined) {
    if (this === undefined || this === null) throw new TypeError('String.prototype.localeCompare called on null or undefined');
    return new Collator(locales, options).compare(String(this), String(that));
  });
}
