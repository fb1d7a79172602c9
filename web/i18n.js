/*!
 * i18n.js: the desk pages' language, for desk.js and people.js (loaded before them) and the
 * audit trail. No framework, no inline script (CSP script-src 'self').
 *
 * The page is in the user's language (<html lang dir>, ticker.desk.texts) and carries its
 * table of strings as JSON (#page-strings, a script element that never runs). TickerText
 * says those strings with their {placeholders} filled in as text (or as nodes), and writes
 * numbers, counts, relative and absolute times with the browser's Intl in that language:
 * Arabic with Arabic-Indic digits and Arabic month names. Every <time data-utc> on the page
 * is rewritten in the language at once, still in UTC (the server's text stays without
 * script).
 */
(function () {
  'use strict';

  const LANG = document.documentElement.lang || 'en';
  // Arabic-Indic digits (٠١٢…) for Arabic, whatever the engine's default for "ar" is.
  const LOCALE = LANG === 'ar' ? 'ar-u-nu-arab' : LANG;
  let T = {};
  const data = document.getElementById('page-strings');
  if (data) {
    try {
      T = JSON.parse(data.textContent) || {};
    } catch (e) {
      T = {};
    }
  }
  const has = (object, key) => Object.prototype.hasOwnProperty.call(object, key);
  const PLACEHOLDER = /(\{[a-z_]+\})/;

  /** The string `key` with each {placeholder} filled in from `values`, as plain text (in
   *  one pass: a value that looks like a placeholder stays as it is). */
  function say(key, values) {
    return (has(T, key) ? T[key] : key).replace(/\{([a-z_]+)\}/g, (whole, name) =>
      (values && has(values, name) ? String(values[name]) : whole));
  }

  /** The string `key` as a fragment: a {placeholder} whose value is a node is that node
   *  (a name in bold, say); any other value is text. */
  function nodes(key, values) {
    const out = document.createDocumentFragment();
    (has(T, key) ? T[key] : key).split(PLACEHOLDER).forEach((part) => {
      const name = part.slice(1, -1);
      if (PLACEHOLDER.test(part) && values && has(values, name)) {
        const value = values[name];
        out.append(value instanceof Node ? value : String(value));
      } else if (part) {
        out.append(part);
      }
    });
    return out;
  }

  const numbers = new Intl.NumberFormat(LOCALE);
  const number = (n) => numbers.format(n);
  const plurals = new Intl.PluralRules(LOCALE);

  /** The plural family `family` (family_one, _two, _few, _other) said of `n`. */
  function count(family, n, values) {
    let key = family + '_' + plurals.select(n);
    if (!has(T, key)) key = family + '_other';
    return say(key, Object.assign({ n: number(n) }, values));
  }

  /** Seconds in whole hours or minutes, as the server writes the expiry choices. */
  function duration(seconds) {
    if (seconds >= 3600 && seconds % 3600 === 0) return count('hours', seconds / 3600);
    return count('minutes', Math.max(1, Math.round(seconds / 60)));
  }

  const list = (items) => items.join(say('list_sep'));

  const relatives = new Intl.RelativeTimeFormat(LOCALE, { numeric: 'auto' });
  /** `ms` from now (negative: in the past) as the language says it ("in 5 minutes",
   *  "hace 3 horas", "قبل ٣ ساعات"): to the second under a minute, to the minute under an
   *  hour, to the half hour under two days, then in days. */
  function relative(ms) {
    const sign = ms < 0 ? -1 : 1;
    const s = Math.round(Math.abs(ms) / 1000);
    if (s < 60) return relatives.format(sign * s || 0, 'second');
    const m = Math.round(s / 60);
    if (m < 60) return relatives.format(sign * m, 'minute');
    const h = Math.round(m / 30) / 2;
    if (h < 48) return relatives.format(sign * h, 'hour');
    return relatives.format(sign * Math.round(h / 24), 'day');
  }

  const TIME = { hour: '2-digit', minute: '2-digit', second: '2-digit' };
  const times = new Intl.DateTimeFormat(LOCALE, TIME);
  const days = new Intl.DateTimeFormat(LOCALE, Object.assign({ day: 'numeric', month: 'short' }, TIME));
  const utcs = new Intl.DateTimeFormat(LOCALE, Object.assign(
    { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' }, TIME));

  /** A moment on the editor's own clock: the time, and the day too if `withDay`. */
  const clock = (ms, withDay) => (withDay ? days : times).format(new Date(ms));
  /** A moment in UTC, day and time, as the pages that say "UTC" show it. */
  const utc = (ms) => utcs.format(new Date(ms));

  /** Every <time data-utc datetime> under `scope` written in the language, still in UTC. */
  function localizeTimes(scope) {
    scope.querySelectorAll('time[data-utc]').forEach((time) => {
      const ms = Date.parse(time.dateTime);
      if (Number.isFinite(ms)) time.textContent = utc(ms);
    });
  }

  window.TickerText = Object.freeze({
    LANG, LOCALE, say, nodes, count, duration, number, list, relative, clock, utc, localizeTimes,
  });
  localizeTimes(document);
})();
