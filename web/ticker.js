/*!
 * ticker.js: <breaking-ticker>, the live breaking-news bar of "ticker".
 *
 * Embed with one script tag and the element; no build step, no dependencies, no inline
 * script or style (works under `script-src 'self'`):
 *
 *   <script src="https://news.example/static/ticker.js" defer></script>
 *   <breaking-ticker channel="en"></breaking-ticker>
 *
 * Wire protocol: docs/protocol.md (websocket `/ws/{channel}`, resume with `?cursor=`; the
 * same messages as Server-Sent Events at `/sse/{channel}`). Embedding on another origin, and
 * the server's TICKER_ALLOWED_ORIGINS: docs/embedding.md.
 *
 * ATTRIBUTES
 *   channel     channel (edition) name                                default "en"
 *   server      base URL of the ticker server, e.g. https://news.example
 *               default: the origin this script was loaded from (so other origins work)
 *   max-items   how many items are on air at most                     default 20
 *   speed       scrolling speed in CSS pixels per second               default 80
 *   label       the label text                       default channel_info.title, "Breaking"
 *   notify      "off" hides the "Notify me of flash news" bell (Web Push, docs/push.md);
 *               otherwise it shows where the browser and the server can do push
 *   sw          URL of the service worker on the page's origin         default /ticker-sw.js
 *
 * HOST ATTRIBUTES SET BY THE ELEMENT (read-only, for CSS and tests)
 *   data-state  "connecting" | "live" | "reconnecting" | "error"
 *   data-mode   "scroll" (moving) | "static" (items fit, still) | "reduced" (reduced motion)
 *   data-empty  present while nothing is on air
 *
 * PROPERTIES
 *   items       (read-only) on-air items, pinned first then newest first; copies
 *   cursor      (read-only) stream ID of the last applied event, or null
 *   state       (read-only) same as data-state
 *   transport   (read-only) "ws" | "sse" | "poll" | null
 *   paused      the user's pause (the same as the pause button); settable
 *
 * EVENTS (dispatched on the element; they bubble)
 *   ticker:update   detail {items, cursor, missed}   after every applied frame or expiry
 *   ticker:state    detail {state}                   when data-state changes
 *
 * CSS CUSTOM PROPERTIES (set them on the element or any ancestor)
 *   --ticker-height         bar height (fixed: the page never shifts)        2.5em
 *   --ticker-font           font shorthand            600 1rem/1.25 system-ui, sans-serif
 *   --ticker-bg             bar background                                   #c8102e
 *   --ticker-fg             bar text colour                                  #fff
 *   --ticker-label-bg       label background                                 #7a0919
 *   --ticker-label-fg       label text colour                                #fff
 *   --ticker-flash-bg       background of "flash" items                      #ffd60a
 *   --ticker-flash-fg       text colour of "flash" items                     #111
 *   --ticker-urgent-bg      background of the "urgent" tag                   #fff
 *   --ticker-urgent-fg      text colour of the "urgent" tag                  #a00d24
 *   --ticker-separator      colour of the separator between items            currentColor
 *   --ticker-gap            space between items                              1.1em
 *   --ticker-focus          keyboard focus ring colour                       #fff
 *   --ticker-stale-filter   filter on the bar while reconnecting / in error  saturate(.2) brightness(.9)
 *   --ticker-stale-opacity  opacity of the stale items                       .6
 * Parts for ::part(): bar, label, controls, button, status, viewport, item.
 * To reserve the space before the script runs, a page may add:
 *   breaking-ticker:not(:defined) { display: block; height: 2.5em; background: #c8102e }
 *
 * BEHAVIOUR
 *   - "snapshot" frames replace everything; "events" insert/replace by `id` (`item`) or remove
 *     (`id`). Expiry uses the server clock (offset = frame.now - Date.now()), checked every 1 s.
 *   - Reconnects with jittered exponential backoff (0.5 s doubling to 30 s, +-50 %) with the
 *     last cursor; 1012 reconnects at once (small jitter); 1000 and 1008 stop (data-state error).
 *   - If the websocket fails to open 3 times in a row while the page is online: SSE at
 *     /sse/{channel}?cursor=..., and if that fails, polling /api/channels/{channel}/snapshot
 *     every 10 s (with a websocket retry now and then).
 *   - Each item shows its time of day (<time datetime=...>), formatted with Intl in the
 *     channel's language (channel_info.lang), like the status texts.
 *   - Pauses on hover, on keyboard focus inside, and with the pause button (WCAG 2.2.2);
 *     prefers-reduced-motion: a still list that the reader can scroll.
 */
(function () {
  'use strict';

  const TAG = 'breaking-ticker';
  if (typeof window === 'undefined' || !window.customElements || customElements.get(TAG)) return;

  // Where this script came from: the default server. Read now: currentScript is null later.
  const SCRIPT_SRC = (document.currentScript && document.currentScript.src) || '';
  const DEFAULT_SERVER = (function () {
    try {
      const u = new URL(SCRIPT_SRC || window.location.href);
      return u.origin !== 'null' ? u.origin : '';
    } catch (e) {
      return '';
    }
  })();

  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const STABLE_MS = 10000; // a connection that lived this long resets the backoff
  const RESTART_JITTER_MS = 500; // close 1012: reconnect at once, spread over this
  const WS_FAILS_BEFORE_FALLBACK = 3;
  const POLL_MS = 10000;
  const PROBE_EVERY_POLLS = 6; // while polling, try the websocket again every minute
  const EXPIRY_TICK_MS = 1000;
  // a new item opens its space over this long (by its width): the others slide, never jump
  const GROW_MIN_MS = 350;
  const GROW_MAX_MS = 900;
  const NEW_MARK_MS = 6000;
  const REORDER_TICK_MS = 150;
  const REORDER_FORCE_MS = 30000;
  const MODEL_CAP = 500;
  const URGENCIES = ['flash', 'urgent', 'breaking'];

  const STRINGS = {
    en: {
      breaking: 'Breaking', flash: 'Flash', urgent: 'Urgent', corrected: 'Corrected',
      connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', error: 'Offline',
      pause: 'Pause ticker', empty: 'No breaking news right now',
      notify: 'Notify me of flash news', notifyOn: 'Flash news notifications are on: turn off',
      notifyFailed: 'Notifications could not be turned on',
    },
    ar: {
      breaking: 'عاجل', flash: 'عاجل جدًا', urgent: 'هام', corrected: 'مُصحَّح',
      connecting: 'جارٍ الاتصال…', live: 'مباشر', reconnecting: 'جارٍ إعادة الاتصال…',
      error: 'غير متصل', pause: 'إيقاف الشريط مؤقتًا', empty: 'لا أخبار عاجلة حاليًا',
      notify: 'نبّهني بالأخبار العاجلة جدًا', notifyOn: 'التنبيهات مفعّلة: أوقفها',
      notifyFailed: 'تعذّر تفعيل التنبيهات',
    },
    es: {
      breaking: 'Última hora', flash: 'Flash', urgent: 'Urgente', corrected: 'Corregido',
      connecting: 'Conectando…', live: 'En directo', reconnecting: 'Reconectando…',
      error: 'Sin conexión', pause: 'Pausar el teletipo', empty: 'Sin noticias de última hora',
      notify: 'Avisarme de las noticias urgentes', notifyOn: 'Avisos activados: desactivar',
      notifyFailed: 'No se pudieron activar los avisos',
    },
    fr: {
      breaking: 'Alerte', flash: 'Flash', urgent: 'Urgent', corrected: 'Corrigé',
      connecting: 'Connexion…', live: 'En direct', reconnecting: 'Reconnexion…',
      error: 'Hors ligne', pause: 'Mettre le bandeau en pause', empty: 'Aucune alerte en ce moment',
      notify: 'M’avertir des alertes', notifyOn: 'Alertes activées : désactiver',
      notifyFailed: 'Impossible d’activer les alertes',
    },
  };

  const CSS = `
:host {
  display: block;
  position: relative;
  block-size: var(--ticker-height, 2.5em);
  overflow: hidden;
  overflow: clip;
  contain: layout paint style;
  container-type: inline-size;
  font: var(--ticker-font, 600 1rem/1.25 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Noto Sans Arabic", sans-serif);
  color: var(--ticker-fg, #fff);
  background: var(--ticker-bg, #c8102e);
  -webkit-font-smoothing: antialiased;
}
:host([hidden]) { display: none; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }

.bar {
  position: relative;
  display: flex; align-items: stretch;
  block-size: 100%;
  background: var(--ticker-bg, #c8102e);
  color: var(--ticker-fg, #fff);
  overflow: hidden;
  overflow: clip; /* never scrolled by focus: the transform alone moves the items */
  transition: filter .4s;
}
.bar[data-state="reconnecting"], .bar[data-state="error"] {
  filter: var(--ticker-stale-filter, saturate(.2) brightness(.9));
}

.label {
  flex: none; position: relative; z-index: 2;
  display: flex; align-items: center; gap: .55em;
  padding-inline: .9em 1.5em;
  background: var(--ticker-label-bg, #7a0919);
  color: var(--ticker-label-fg, #fff);
  font-size: .82em; font-weight: 800; letter-spacing: .09em; text-transform: uppercase;
  white-space: nowrap;
  clip-path: polygon(0 0, 100% 0, calc(100% - .75em) 100%, 0 100%);
}
.bar[dir="rtl"] .label {
  letter-spacing: 0; font-size: .9em;
  clip-path: polygon(0 0, 100% 0, 100% 100%, .75em 100%);
}
.dot {
  flex: none; inline-size: .62em; block-size: .62em; border-radius: 50%;
  background: #fff;
}
.bar[data-state="live"] .dot { animation: ticker-pulse 2s ease-out infinite; }
.bar[data-state="connecting"] .dot { background: #ffd60a; }
.bar[data-state="reconnecting"] .dot { background: transparent; box-shadow: inset 0 0 0 2px #fff; }
.bar[data-state="error"] .dot { background: #222; box-shadow: inset 0 0 0 2px #fff; }
@keyframes ticker-pulse {
  0% { box-shadow: 0 0 0 0 rgb(255 255 255 / .75); }
  70% { box-shadow: 0 0 0 .5em rgb(255 255 255 / 0); }
  100% { box-shadow: 0 0 0 0 rgb(255 255 255 / 0); }
}

.controls {
  flex: none; display: flex; align-items: center; gap: .3em;
  padding-inline: .2em .15em;
}
.toggle, .bell {
  appearance: none; -webkit-appearance: none;
  display: grid; place-items: center;
  inline-size: 1.85em; block-size: 1.85em;
  margin: 0; padding: 0; border: 0; border-radius: 50%;
  background: transparent; color: inherit; font: inherit; cursor: pointer;
}
.toggle svg, .bell svg { inline-size: .9em; block-size: .9em; fill: currentColor; }
.toggle:hover, .bell:hover { background: rgb(255 255 255 / .18); }
.toggle:focus-visible, .bell:focus-visible {
  outline: 2px solid var(--ticker-focus, #fff); outline-offset: -2px;
}
.toggle[aria-pressed="true"], .bell[aria-pressed="true"] { background: rgb(255 255 255 / .22); }
.toggle[aria-pressed="true"] .i-pause, .toggle[aria-pressed="false"] .i-play { display: none; }
.bell[hidden] { display: none; }
.bell[aria-pressed="false"] .i-bell-on, .bell[aria-pressed="true"] .i-bell-off { display: none; }
.status {
  /* over the end of the bar: showing it never moves the items (no layout shift) */
  position: absolute; inset-block: 0; inset-inline-end: 0; z-index: 3;
  display: none; align-items: center; gap: .45em;
  padding-inline: 2.2em .9em;
  background: linear-gradient(to right, transparent, var(--ticker-bg, #c8102e) 1.8em);
  font-size: .74em; font-weight: 700; letter-spacing: .02em; white-space: nowrap;
}
.bar[dir="rtl"] .status { background: linear-gradient(to left, transparent, var(--ticker-bg, #c8102e) 1.8em); }
.bar:not([data-state="live"]) .status { display: flex; }

.viewport {
  flex: 1 1 auto; min-inline-size: 0; position: relative; overflow: hidden; overflow: clip;
  transition: opacity .4s;
}
.bar[data-state="reconnecting"] .viewport, .bar[data-state="error"] .viewport {
  opacity: var(--ticker-stale-opacity, .6);
}
.bar[data-mode="scroll"] .viewport {
  -webkit-mask-image: linear-gradient(to right, transparent 0, #000 .9em, #000 calc(100% - 2.2em), transparent 100%);
  mask-image: linear-gradient(to right, transparent 0, #000 .9em, #000 calc(100% - 2.2em), transparent 100%);
}
.bar[data-mode="scroll"][dir="rtl"] .viewport {
  -webkit-mask-image: linear-gradient(to left, transparent 0, #000 .9em, #000 calc(100% - 2.2em), transparent 100%);
  mask-image: linear-gradient(to left, transparent 0, #000 .9em, #000 calc(100% - 2.2em), transparent 100%);
}
.bar[data-mode="reduced"] .viewport { overflow-x: auto; scrollbar-width: none; }
.bar[data-mode="reduced"] .viewport::-webkit-scrollbar { display: none; }
.viewport:focus-visible { outline: 2px solid var(--ticker-focus, #fff); outline-offset: -2px; }

.track {
  position: absolute; inset-block: 0; inset-inline-start: 0;
  display: flex; inline-size: max-content;
  will-change: transform;
}
.run {
  display: flex; flex: none; align-items: stretch;
  margin: 0; padding: 0; list-style: none;
}
.bar:not([data-mode="scroll"]) .dup { display: none; }
.item {
  flex: none; display: flex; align-items: center;
  block-size: 100%; overflow: hidden; overflow: clip; white-space: nowrap;
}
.item::after {
  content: ""; flex: none;
  inline-size: .34em; block-size: .34em;
  margin-inline: var(--ticker-gap, 1.1em) 0;
  background: var(--ticker-separator, currentColor);
  opacity: .65; transform: rotate(45deg);
}
.bar:not([data-mode="scroll"]) .run > .item:last-child::after { display: none; }
.in {
  display: inline-flex; align-items: center; gap: .5em;
  block-size: 100%;
  padding-inline: .45em;
  margin-inline-start: calc(var(--ticker-gap, 1.1em) - .45em);
}
.text { font-weight: 600; }
.src { font-weight: 800; }
/* the item's time of day, in the channel's language, before its box (flash highlight) */
.time {
  flex: none; margin-inline-start: var(--ticker-gap, 1.1em);
  font-size: .8em; font-weight: 600; opacity: .85; font-variant-numeric: tabular-nums;
}
.time + .in { margin-inline-start: .15em; }
.tag {
  flex: none; font-size: .68em; font-weight: 800; letter-spacing: .08em; line-height: 1;
  text-transform: uppercase;
  padding: .28em .5em .24em; border-radius: 2px;
}
.bar[dir="rtl"] .tag { letter-spacing: 0; font-size: .78em; }
.item[data-urgency="flash"] .in {
  background: var(--ticker-flash-bg, #ffd60a); color: var(--ticker-flash-fg, #111);
}
.item[data-urgency="flash"] .tag {
  background: var(--ticker-flash-fg, #111); color: var(--ticker-flash-bg, #ffd60a);
}
.item[data-urgency="flash"] .text { font-weight: 800; }
.item[data-urgency="urgent"] .tag {
  background: var(--ticker-urgent-bg, #fff); color: var(--ticker-urgent-fg, #a00d24);
}
.item[data-urgency="urgent"] .text { font-weight: 700; }
.corr {
  flex: none; font-size: .64em; font-weight: 700; letter-spacing: .06em; line-height: 1;
  text-transform: uppercase;
  padding: .22em .45em .2em; border: 1px solid currentColor; border-radius: 2px; opacity: .9;
}
.bar[dir="rtl"] .corr { letter-spacing: 0; font-size: .74em; }
.link { color: inherit; text-decoration: none; border-radius: 2px; }
.link:hover .text, .link:focus-visible .text { text-decoration: underline; text-underline-offset: .2em; }
.link:focus-visible { outline: 2px solid var(--ticker-focus, #fff); outline-offset: -1px; }
.item[data-urgency="flash"] .link:focus-visible { outline-color: currentColor; }
.item.is-new .in { animation: ticker-new 3.5s ease-out; }
@keyframes ticker-new {
  from { box-shadow: inset 0 0 0 100em rgb(255 255 255 / .38); }
  to { box-shadow: inset 0 0 0 100em rgb(255 255 255 / 0); }
}

.empty {
  position: absolute; inset: 0;
  display: flex; align-items: center; padding-inline: 1em;
  font-size: .88em; font-weight: 500; opacity: .85;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
.sr {
  position: absolute; inline-size: 1px; block-size: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip: rect(0 0 0 0); clip-path: inset(50%); white-space: nowrap;
}
@container (max-width: 34em) {
  .status { display: none !important; }
  .label { padding-inline: .7em 1.3em; }
}
@media (prefers-reduced-motion: reduce) {
  .bar[data-state="live"] .dot, .item.is-new .in { animation: none; }
  .bar, .viewport { transition: none; }
}
@media (forced-colors: active) {
  .bar, .label, .item[data-urgency="flash"] .in { border: 1px solid CanvasText; }
}
`;

  let sharedSheet = null;
  function adoptStyles(root) {
    // Constructable stylesheets are CSSOM: no inline <style> needing 'unsafe-inline'.
    try {
      if (!sharedSheet) {
        sharedSheet = new CSSStyleSheet();
        sharedSheet.replaceSync(CSS);
      }
      root.adoptedStyleSheets = [sharedSheet];
      return;
    } catch (e) {
      // older engines: a <style> element inside the shadow root
    }
    const style = document.createElement('style');
    style.textContent = CSS;
    root.appendChild(style);
  }

  // ---------------------------------------------------------------------------------------
  // helpers

  function warn() {
    try {
      console.warn.apply(console, ['[breaking-ticker]'].concat(Array.prototype.slice.call(arguments)));
    } catch (e) { /* no console */ }
  }
  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const mod = (a, n) => (n > 0 ? ((a % n) + n) % n : 0);

  function el(tag, cls) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    return e;
  }

  /** base64url (no padding needed) -> Uint8Array: a VAPID applicationServerKey. */
  function fromBase64Url(text) {
    const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - text.length % 4) % 4);
    const raw = atob(b64);
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function svgIcon(cls, d) {
    const ns = 'http://www.w3.org/2000/svg';
    const s = document.createElementNS(ns, 'svg');
    s.setAttribute('viewBox', '0 0 16 16');
    s.setAttribute('aria-hidden', 'true');
    s.setAttribute('focusable', 'false');
    s.setAttribute('class', cls);
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', d);
    s.appendChild(p);
    return s;
  }

  const ID_RE = /^(\d{1,20})-(\d{1,20})$/;
  function parseId(s) {
    if (typeof s !== 'string') return null;
    const m = ID_RE.exec(s);
    return m ? [BigInt(m[1]), BigInt(m[2])] : null;
  }
  /** Compare two stream IDs; null when either is not one. */
  function cmpIds(a, b) {
    const x = parseId(a);
    const y = parseId(b);
    if (!x || !y) return null;
    if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
    if (x[1] !== y[1]) return x[1] < y[1] ? -1 : 1;
    return 0;
  }
  /** On-air order: pinned first, then newest first (ts, then id). */
  function byAir(a, b) {
    if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
    if (a.ts !== b.ts) return b.ts - a.ts;
    const c = cmpIds(a.id, b.id);
    if (c !== null) return -c;
    return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
  }

  function safeLink(v) {
    if (typeof v !== 'string' || v === '' || v.length > 4000) return null;
    try {
      const u = new URL(v);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  const oneLine = (s) => s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim();

  /** A validated copy of a wire ITEM, or null (the caller warns). */
  function cleanItem(raw) {
    if (!isObj(raw)) return null;
    const id = raw.id;
    if (typeof id !== 'string' || id === '' || id.length > 64) return null;
    if (typeof raw.text !== 'string') return null;
    const text = oneLine(raw.text);
    if (!text) return null;
    const source = typeof raw.source === 'string' && oneLine(raw.source) ? oneLine(raw.source) : null;
    let ts = Number.isFinite(raw.ts) ? raw.ts : NaN;
    if (!Number.isFinite(ts)) {
      const p = parseId(id);
      ts = p ? Number(p[0]) : 0;
    }
    return {
      id,
      text,
      source,
      urgency: URGENCIES.indexOf(raw.urgency) >= 0 ? raw.urgency : 'breaking',
      link: safeLink(raw.link),
      tags: Array.isArray(raw.tags) ? raw.tags.filter((t) => typeof t === 'string') : [],
      ts,
      expires: Number.isFinite(raw.expires) ? raw.expires : null,
      version: Number.isFinite(raw.version) ? raw.version : 1,
      corrected: raw.corrected === true,
      pinned: raw.pinned === true,
      story: typeof raw.story === 'string' ? raw.story : id,
      versions: cleanVersions(raw.versions),
    };
  }

  /** `{edition: id}` of the story's versions; anything else in it is dropped. */
  function cleanVersions(raw) {
    const out = {};
    if (!isObj(raw)) return out;
    for (const [k, v] of Object.entries(raw)) {
      if (typeof k === 'string' && typeof v === 'string' && parseId(v)) out[k] = v;
    }
    return out;
  }

  const copyItem = (it) =>
    Object.assign({}, it, { tags: it.tags.slice(), versions: Object.assign({}, it.versions) });

  const signature = (it) =>
    JSON.stringify([it.text, it.source, it.urgency, it.link, it.corrected, it.pinned, it.version]);

  /**
   * Editors often write the source into the text ("Israeli media: ..."); show it once.
   * Returns {source, text}.
   */
  function splitSource(it) {
    const source = it.source;
    let text = it.text;
    if (source) {
      const head = text.slice(0, source.length);
      if (head.toLocaleLowerCase() === source.toLocaleLowerCase()) {
        const rest = text.slice(source.length);
        const m = /^\s*[:：]\s*/.exec(rest);
        if (m && rest.length > m[0].length) text = rest.slice(m[0].length);
      }
    }
    return { source, text };
  }

  function isRotation(a, b) {
    if (a.length !== b.length) return false;
    const n = a.length;
    if (n === 0) return true;
    const k = b.indexOf(a[0]);
    if (k < 0) return false;
    for (let i = 0; i < n; i++) if (a[i] !== b[(k + i) % n]) return false;
    return true;
  }

  // ---------------------------------------------------------------------------------------

  class BreakingTicker extends HTMLElement {
    static get observedAttributes() {
      return ['channel', 'server', 'max-items', 'speed', 'label', 'notify', 'sw'];
    }

    constructor() {
      super();
      this._root = this.attachShadow({ mode: 'open' });
      adoptStyles(this._root);
      this._build();

      // on-air model
      this._model = new Map();
      this._cursor = null;
      this._missed = null;
      this._offset = 0; // server clock - local clock, ms
      this._info = null; // channel_info
      this._hadSnapshot = false;
      this._announced = new Set();

      // rendering
      this._els = new Map(); // id -> {a: li, b: li (duplicate), sig}
      this._order = []; // rendered (cyclic) order of ids
      this._mode = 'static';
      this._reduced = false;
      this._x = 0;
      this._anim = null;
      this._animW = 0;
      this._animDur = 0;
      this._animSign = 0;
      this._grows = [];
      this._growing = false;
      this._growToken = 0;
      this._reorderTimer = 0;
      this._reorderSince = 0;
      this._userPaused = false;
      this._hover = false;
      this._focus = false;

      // connection
      this._connected = false;
      this._state = 'connecting';
      this._everLive = false;
      this._transport = null;
      this._gen = 0;
      this._ws = null;
      this._probe = null;
      this._es = null;
      this._retryTimer = 0;
      this._pollTimer = 0;
      this._pollCount = 0;
      this._expiryTimer = 0;
      this._attempt = 0;
      this._openFails = 0;
      this._notifyGen = 0;
      this._pushKey = null;

      this._onOnline = this._onOnline.bind(this);
      this._onOffline = this._onOffline.bind(this);
      this._onMotion = this._onMotion.bind(this);
      // an open socket keeps a page out of the back/forward cache: close it, resume on return
      this._onPageHide = () => this._stop();
      this._onPageShow = (e) => { if (e.persisted && this._connected) this._start(); };
      this._mq = window.matchMedia ? window.matchMedia('(prefers-reduced-motion: reduce)') : null;
      this._ro = typeof ResizeObserver === 'function'
        ? new ResizeObserver(() => { if (!this._growing) this._relayout(this._getX()); })
        : null;
    }

    // -- public API ------------------------------------------------------------------------

    get items() {
      return this._displayList().map(copyItem);
    }
    get cursor() {
      return this._cursor;
    }
    get state() {
      return this._state;
    }
    get transport() {
      return this._transport;
    }
    get paused() {
      return this._userPaused;
    }
    set paused(v) {
      this._userPaused = !!v;
      this._btn.setAttribute('aria-pressed', String(this._userPaused));
      this._syncRun();
    }

    // -- lifecycle -------------------------------------------------------------------------

    connectedCallback() {
      this._connected = true;
      this._setState(this._state, true);
      if (!this._info) this._applyInfo();
      if (this._mq) {
        this._reduced = this._mq.matches;
        if (this._mq.addEventListener) this._mq.addEventListener('change', this._onMotion);
        else if (this._mq.addListener) this._mq.addListener(this._onMotion);
      }
      window.addEventListener('online', this._onOnline);
      window.addEventListener('offline', this._onOffline);
      window.addEventListener('pagehide', this._onPageHide);
      window.addEventListener('pageshow', this._onPageShow);
      if (this._ro) {
        this._ro.observe(this._viewport);
        this._ro.observe(this._run);
      }
      this._expiryTimer = setInterval(() => this._expire(), EXPIRY_TICK_MS);
      this._render(new Set());
      this._start();
      this._setupNotify();
    }

    disconnectedCallback() {
      this._connected = false;
      this._stop();
      clearInterval(this._expiryTimer);
      clearInterval(this._reorderTimer);
      this._reorderTimer = 0;
      if (this._mq) {
        if (this._mq.removeEventListener) this._mq.removeEventListener('change', this._onMotion);
        else if (this._mq.removeListener) this._mq.removeListener(this._onMotion);
      }
      window.removeEventListener('online', this._onOnline);
      window.removeEventListener('offline', this._onOffline);
      window.removeEventListener('pagehide', this._onPageHide);
      window.removeEventListener('pageshow', this._onPageShow);
      if (this._ro) this._ro.disconnect();
    }

    attributeChangedCallback(name, oldValue, value) {
      if (oldValue === value || !this._connected) return;
      if (name === 'channel' || name === 'server') {
        this._start();
        this._setupNotify();
      } else if (name === 'notify' || name === 'sw') {
        this._setupNotify();
      } else if (name === 'max-items') {
        this._render(new Set());
        this._emitUpdate();
      } else if (name === 'speed') {
        if (this._mode === 'scroll') this._relayout(this._getX());
      } else if (name === 'label') {
        this._applyLabel();
      }
    }

    // -- DOM -------------------------------------------------------------------------------

    _build() {
      const bar = el('div', 'bar');
      bar.setAttribute('part', 'bar');
      bar.dataset.state = 'connecting';
      bar.dataset.mode = 'static';

      const label = el('div', 'label');
      label.setAttribute('part', 'label');
      const dot = el('span', 'dot');
      dot.setAttribute('aria-hidden', 'true');
      const labelText = el('span', 'label-text');
      label.append(dot, labelText);

      const controls = el('div', 'controls');
      controls.setAttribute('part', 'controls');
      const btn = el('button', 'toggle');
      btn.type = 'button';
      btn.setAttribute('part', 'button');
      btn.setAttribute('aria-pressed', 'false');
      btn.append(svgIcon('i-pause', 'M4 2.5h3v11H4zM9 2.5h3v11H9z'), svgIcon('i-play', 'M4.5 2.5l9 5.5-9 5.5z'));
      btn.addEventListener('click', () => { this.paused = !this._userPaused; });
      const status = el('span', 'status');
      status.setAttribute('part', 'status');
      // Web Push opt-in (docs/push.md): shown only where it can work, asked only on a click.
      const bell = el('button', 'bell');
      bell.type = 'button';
      bell.hidden = true;
      bell.setAttribute('part', 'button notify');
      bell.setAttribute('aria-pressed', 'false');
      bell.append(
        svgIcon('i-bell-off', 'M8 1.5a1 1 0 0 1 1 1v.6A4.5 4.5 0 0 1 12.5 7.5v3l1.5 2H2l1.5-2v-3A4.5 4.5 0 0 1 7 3.1v-.6a1 1 0 0 1 1-1zM6.3 13.5h3.4a1.7 1.7 0 0 1-3.4 0z'),
        svgIcon('i-bell-on', 'M8 1.5a1 1 0 0 1 1 1v.6A4.5 4.5 0 0 1 12.5 7.5v3l1.5 2H2l1.5-2v-3A4.5 4.5 0 0 1 7 3.1v-.6a1 1 0 0 1 1-1zM6.3 13.5h3.4a1.7 1.7 0 0 1-3.4 0zM1 6.5a6.5 6.5 0 0 1 2-4.5l.9.9A5.2 5.2 0 0 0 2.3 6.5zm14 0h-1.3a5.2 5.2 0 0 0-1.6-3.6l.9-.9A6.5 6.5 0 0 1 15 6.5z'));
      bell.addEventListener('click', () => this._toggleNotify());
      controls.append(btn, bell);

      const viewport = el('div', 'viewport');
      viewport.setAttribute('part', 'viewport');
      viewport.setAttribute('role', 'marquee');
      const track = el('div', 'track');
      const run = el('ul', 'run');
      run.setAttribute('role', 'list');
      const dup = el('ul', 'run dup');
      dup.setAttribute('aria-hidden', 'true');
      dup.setAttribute('inert', '');
      track.append(run, dup);
      const empty = el('div', 'empty');
      empty.setAttribute('aria-hidden', 'true');
      viewport.append(track, empty);

      bar.append(label, controls, viewport, status);

      const sr = el('div', 'sr');
      sr.setAttribute('aria-live', 'polite');
      sr.setAttribute('aria-atomic', 'true');

      this._root.append(bar, sr);
      Object.assign(this, {
        _bar: bar, _labelText: labelText, _btn: btn, _bell: bell, _status: status,
        _viewport: viewport,
        _track: track, _run: run, _dup: dup, _empty: empty, _sr: sr,
      });

      // WCAG 2.2.2: pause on hover (not touch: there is no "leave") and on keyboard focus.
      bar.addEventListener('pointerenter', (e) => {
        if (e.pointerType === 'touch') return;
        this._hover = true;
        this._syncRun();
      });
      bar.addEventListener('pointerleave', () => {
        this._hover = false;
        this._syncRun();
      });
      bar.addEventListener('focusin', (e) => {
        this._updateFocus();
        this._revealFocused(e.target);
      });
      bar.addEventListener('focusout', () => setTimeout(() => this._updateFocus(), 0));
    }

    /** The page's language and direction around the element: the guess until a snapshot. */
    _pageLang() {
      const holder = this.closest('[lang]');
      return (holder && holder.getAttribute('lang')) || '';
    }

    _t() {
      const lang = ((this._info && this._info.lang) || this._pageLang() || 'en').toLowerCase().split('-')[0];
      return STRINGS[lang] || STRINGS.en;
    }

    /** The item's time of day in the channel's language (its digits, its clock), or ''. */
    _clock(ts) {
      const lang = (this._info && this._info.lang) || this._pageLang() || 'en';
      if (!this._clockFmt || this._clockLang !== lang) {
        this._clockLang = lang;
        try {
          this._clockFmt = new Intl.DateTimeFormat(lang, { hour: 'numeric', minute: '2-digit' });
        } catch (e) {
          this._clockFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
        }
      }
      return this._clockFmt.format(new Date(ts));
    }

    _applyLabel() {
      const attr = this.getAttribute('label');
      const text = (attr && attr.trim()) || (this._info && this._info.title) || this._t().breaking;
      this._labelText.textContent = text;
      this._viewport.setAttribute('aria-label', text);
      const t = this._t();
      this._btn.setAttribute('aria-label', t.pause);
      this._btn.title = t.pause;
      this._status.textContent = t[this._state] || '';
      this._empty.textContent = t.empty;
      this._labelBell();
    }

    // -- Web Push opt-in (docs/push.md) ----------------------------------------------------

    _labelBell() {
      const t = this._t();
      const on = this._bell.getAttribute('aria-pressed') === 'true';
      const text = on ? t.notifyOn : t.notify;
      this._bell.setAttribute('aria-label', text);
      this._bell.title = text;
    }

    /** Where the service worker is: `sw`, else /ticker-sw.js on the page's own origin. */
    _swUrl() {
      return (this.getAttribute('sw') || '').trim() || '/ticker-sw.js';
    }

    _pushUrl(path) {
      const b = this._base();
      return b ? b.u.origin + b.path + path : null;
    }

    _pushEditions() {
      try {
        const raw = localStorage.getItem('ticker-push|' + this._pushUrl(''));
        const list = raw ? JSON.parse(raw) : [];
        return Array.isArray(list) ? list.filter((x) => typeof x === 'string') : [];
      } catch (e) {
        return [];
      }
    }

    _savePushEditions(list) {
      try {
        localStorage.setItem('ticker-push|' + this._pushUrl(''), JSON.stringify(list));
      } catch (e) { /* private mode: the browser's subscription still stands */ }
    }

    /** Show the bell where push can work: the browser has it, the reader has not said no,
     *  the page did not turn it off (notify="off") and the server has push set up. */
    async _setupNotify() {
      const bell = this._bell;
      bell.hidden = true;
      const supported = 'serviceWorker' in navigator && 'PushManager' in window &&
        'Notification' in window && window.isSecureContext;
      if (!supported || this.getAttribute('notify') === 'off' ||
          Notification.permission === 'denied') return;
      const url = this._pushUrl('/push/key');
      if (!url) return;
      const gen = ++this._notifyGen;
      let key = null;
      try {
        const res = await fetch(url, { credentials: 'omit' });
        if (res.ok) key = (await res.json()).publicKey;
      } catch (e) {
        key = null;
      }
      if (gen !== this._notifyGen || typeof key !== 'string' || !key) return;
      this._pushKey = key;
      let on = false;
      try {
        const reg = await navigator.serviceWorker.getRegistration(this._swUrl());
        const sub = reg && await reg.pushManager.getSubscription();
        on = Boolean(sub) && Notification.permission === 'granted' &&
          this._pushEditions().includes(this._channel());
      } catch (e) {
        on = false;
      }
      if (gen !== this._notifyGen) return;
      bell.setAttribute('aria-pressed', String(on));
      bell.hidden = false;
      this._labelBell();
    }

    async _toggleNotify() {
      const bell = this._bell;
      if (bell.getAttribute('aria-busy') === 'true') return;
      bell.setAttribute('aria-busy', 'true');
      const edition = this._channel();
      try {
        if (bell.getAttribute('aria-pressed') === 'true') {
          await this._notifyOff(edition);
        } else {
          await this._notifyOn(edition);
        }
      } catch (e) {
        warn('notifications', e);
        this._announce(this._t().notifyFailed);
      } finally {
        bell.removeAttribute('aria-busy');
        this._labelBell();
      }
    }

    async _notifyOn(edition) {
      // Asked only here, on the reader's click: never on page load.
      const permission = await Notification.requestPermission();
      if (permission !== 'granted') {
        if (permission === 'denied') this._bell.hidden = true;
        return;
      }
      const reg = await navigator.serviceWorker.register(this._swUrl());
      await navigator.serviceWorker.ready;
      const sub = await reg.pushManager.getSubscription() || await reg.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: fromBase64Url(this._pushKey),
      });
      const res = await fetch(this._pushUrl('/push/subscriptions'), {
        method: 'POST', credentials: 'omit', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ edition, subscription: sub.toJSON(), page: location.href }),
      });
      if (!res.ok) throw new Error('the server refused the subscription: ' + res.status);
      const list = this._pushEditions().filter((x) => x !== edition).concat([edition]);
      this._savePushEditions(list);
      this._bell.setAttribute('aria-pressed', 'true');
    }

    async _notifyOff(edition) {
      const reg = await navigator.serviceWorker.getRegistration(this._swUrl());
      const sub = reg && await reg.pushManager.getSubscription();
      if (sub) {
        await fetch(this._pushUrl('/push/subscriptions'), {
          method: 'DELETE', credentials: 'omit', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ edition, endpoint: sub.endpoint }),
        });
      }
      const list = this._pushEditions().filter((x) => x !== edition);
      this._savePushEditions(list);
      if (sub && list.length === 0) await sub.unsubscribe();
      this._bell.setAttribute('aria-pressed', 'false');
    }

    _applyInfo() {
      const info = this._info;
      let dir = info ? info.dir : 'ltr';
      if (!info && this.isConnected) {
        try { dir = getComputedStyle(this).direction === 'rtl' ? 'rtl' : 'ltr'; } catch (e) { /* ltr */ }
      }
      const changed = this._bar.getAttribute('dir') !== dir;
      this._bar.setAttribute('dir', dir);
      if (info && info.lang) this._bar.setAttribute('lang', info.lang);
      else this._bar.removeAttribute('lang');
      this._applyLabel();
      if (changed) {
        // mirrored layout: start again from the (new) start edge
        this._killAnim();
        this._relayout(0);
      }
    }

    _setState(s, force) {
      if (s === this._state && !force) return;
      const changed = s !== this._state;
      this._state = s;
      if (s === 'live') this._everLive = true;
      this._bar.dataset.state = s;
      this._status.textContent = this._t()[s] || '';
      if (this._connected && this.getAttribute('data-state') !== s) this.setAttribute('data-state', s);
      if (changed || force) {
        this.dispatchEvent(new CustomEvent('ticker:state', { bubbles: true, detail: { state: s } }));
      }
    }

    _emitUpdate() {
      this.dispatchEvent(new CustomEvent('ticker:update', {
        bubbles: true,
        detail: { items: this.items, cursor: this._cursor, missed: this._missed },
      }));
    }

    _announce(text) {
      const sr = this._sr;
      sr.textContent = '';
      setTimeout(() => { sr.textContent = text; }, 60);
    }

    // -- model -----------------------------------------------------------------------------

    _maxItems() {
      const n = parseInt(this.getAttribute('max-items') || '', 10);
      return Number.isFinite(n) && n > 0 ? Math.min(n, 200) : 20;
    }

    _speed() {
      const v = parseFloat(this.getAttribute('speed') || '');
      return Number.isFinite(v) && v > 0 ? Math.min(Math.max(v, 5), 2000) : 80;
    }

    _serverNow() {
      return Date.now() + this._offset;
    }

    _displayList() {
      return Array.from(this._model.values()).sort(byAir).slice(0, this._maxItems());
    }

    _onText(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch (e) {
        warn('ignored a frame that is not JSON');
        return;
      }
      let ok = false;
      try {
        ok = this._applyFrame(frame);
      } catch (e) {
        warn('ignored a frame that could not be applied', e);
      }
      if (ok && this._state !== 'live') this._setState('live');
    }

    /** Apply one protocol frame; false when it was ignored. */
    _applyFrame(f) {
      if (!isObj(f)) {
        warn('ignored a frame that is not an object');
        return false;
      }
      const fresh = new Set();
      const flashes = [];
      if (f.type === 'snapshot') {
        if (!Array.isArray(f.items)) {
          warn('ignored a snapshot without items');
          return false;
        }
        if (Number.isFinite(f.now)) this._offset = f.now - Date.now();
        if (isObj(f.channel_info)) {
          const ci = f.channel_info;
          this._info = {
            name: typeof ci.name === 'string' ? ci.name : null,
            lang: typeof ci.lang === 'string' && /^[A-Za-z0-9-]{1,35}$/.test(ci.lang) ? ci.lang : null,
            dir: ci.dir === 'rtl' ? 'rtl' : 'ltr',
            title: typeof ci.title === 'string' && ci.title.trim() ? oneLine(ci.title) : null,
          };
          this._applyInfo();
        }
        const now = this._serverNow();
        const next = new Map();
        for (const raw of f.items) {
          const it = cleanItem(raw);
          if (!it) {
            warn('ignored a malformed item', raw);
            continue;
          }
          if (it.expires !== null && it.expires <= now) continue;
          next.set(it.id, it);
        }
        if (this._hadSnapshot || this._model.size) {
          for (const id of next.keys()) if (!this._model.has(id)) fresh.add(id);
        }
        this._model = next;
        this._hadSnapshot = true;
        if (typeof f.cursor === 'string' && f.cursor) this._cursor = f.cursor;
        this._missed = Number.isFinite(f.missed) ? f.missed : null;
        for (const id of fresh) flashes.push(id);
      } else if (f.type === 'events') {
        if (!Array.isArray(f.events)) {
          warn('ignored an events frame without events');
          return false;
        }
        if (Number.isFinite(f.now)) this._offset = f.now - Date.now();
        const now = this._serverNow();
        for (const ev of f.events) {
          if (!isObj(ev)) {
            warn('ignored a malformed event', ev);
            continue;
          }
          const evCursor = typeof ev.cursor === 'string' && ev.cursor ? ev.cursor : null;
          if (evCursor && this._cursor && cmpIds(evCursor, this._cursor) !== null &&
              cmpIds(evCursor, this._cursor) <= 0) {
            continue; // already applied (never apply twice)
          }
          if (ev.item !== undefined && ev.item !== null) {
            const it = cleanItem(ev.item);
            if (!it) {
              warn('ignored an event with a malformed item', ev);
            } else if (it.expires !== null && it.expires <= now) {
              this._model.delete(it.id);
              fresh.delete(it.id);
            } else if (ev.op === 'versions' && !this._model.has(it.id)) {
              // Another edition linked a version: it changes an item we show, never adds one.
            } else {
              if (!this._model.has(it.id)) {
                fresh.add(it.id);
                flashes.push(it.id);
              }
              this._model.set(it.id, it);
            }
          } else if (typeof ev.id === 'string' && ev.id) {
            this._model.delete(ev.id);
            fresh.delete(ev.id);
          } else {
            warn('ignored an event without item or id', ev);
          }
          if (evCursor) this._cursor = evCursor;
        }
        if (typeof f.cursor === 'string' && f.cursor) {
          const c = this._cursor ? cmpIds(f.cursor, this._cursor) : 1;
          if (c === null || c > 0) this._cursor = f.cursor;
        }
        this._missed = Number.isFinite(f.missed) ? f.missed : null;
      } else {
        warn('ignored a frame of unknown type', f.type);
        return false;
      }
      this._capModel();
      this._render(fresh);
      this._announceFlashes(flashes);
      this._emitUpdate();
      return true;
    }

    _capModel() {
      if (this._model.size <= MODEL_CAP) return;
      const keep = Array.from(this._model.values()).sort(byAir).slice(0, MODEL_CAP);
      this._model = new Map(keep.map((it) => [it.id, it]));
    }

    _announceFlashes(ids) {
      const t = this._t();
      const shown = new Set(this._displayList().map((it) => it.id));
      for (const id of ids) {
        const it = this._model.get(id);
        if (!it || it.urgency !== 'flash' || this._announced.has(id) || !shown.has(id)) continue;
        if (this._announced.size > 1000) this._announced.clear();
        this._announced.add(id);
        const parts = splitSource(it);
        this._announce(t.flash + ': ' + (parts.source ? parts.source + ': ' : '') + parts.text);
      }
    }

    _expire() {
      const now = this._serverNow();
      let removed = false;
      for (const [id, it] of this._model) {
        if (it.expires !== null && it.expires <= now) {
          this._model.delete(id);
          removed = true;
        }
      }
      if (removed) {
        this._render(new Set());
        this._emitUpdate();
      }
    }

    // -- rendering -------------------------------------------------------------------------
    //
    // The track holds two identical runs (the second aria-hidden and inert) and moves by a
    // transform (Web Animations API: compositor-driven, no style attributes) over exactly one
    // run's width, at `speed` px/s, for a seamless loop. x is the scrolled distance from the
    // run's inline-start. Every change keeps one visible "anchor" item where it is on screen;
    // new items are put at the visible start and open their space smoothly; the cyclic order
    // is put back to on-air order later, at a moment when that moves nothing visible.

    /**
     * Public, for previews (the desk shows a line exactly as readers will get it): the list
     * element this ticker would render for item `it` (the protocol's ITEM) in a channel
     * described by `info` ({name, lang, dir, title}, as in channel_info). Used on a
     * detached element: it sets that element's channel info.
     */
    previewItem(it, info) {
      this._info = info;
      return this._buildItem(it, false);
    }

    _buildItem(it, dup) {
      const t = this._t();
      const li = el('li', 'item');
      li.setAttribute('part', 'item');
      li.dataset.id = it.id;
      li.dataset.urgency = it.urgency;
      if (it.pinned) li.dataset.pinned = '';
      if (it.corrected) li.dataset.corrected = '';
      if (it.ts > 0 && it.ts < 8.64e15 && typeof Intl === 'object') {
        const time = el('time', 'time');
        time.dateTime = new Date(it.ts).toISOString();
        time.textContent = this._clock(it.ts);
        li.appendChild(time);
      }
      const box = el('span', 'in');
      if (it.urgency !== 'breaking') {
        const tag = el('span', 'tag');
        tag.textContent = it.urgency === 'flash' ? t.flash : t.urgent;
        box.appendChild(tag);
      }
      const parts = splitSource(it);
      if (parts.source) {
        const src = el('span', 'src');
        const b = document.createElement('bdi');
        b.textContent = parts.source;
        src.append(b, document.createTextNode(':'));
        box.appendChild(src);
      }
      const text = el('bdi', 'text');
      text.textContent = parts.text;
      if (it.link) {
        const a = el('a', 'link');
        a.href = it.link;
        if (dup) a.tabIndex = -1;
        a.appendChild(text);
        box.appendChild(a);
      } else {
        box.appendChild(text);
      }
      if (it.corrected) {
        const c = el('span', 'corr');
        c.textContent = t.corrected;
        box.appendChild(c);
      }
      li.appendChild(box);
      return li;
    }

    _ensureEl(it, isNew) {
      const sig = signature(it);
      let rec = this._els.get(it.id);
      if (rec && rec.sig === sig) return rec;
      let a;
      let b;
      try {
        a = this._buildItem(it, false);
        b = this._buildItem(it, true);
      } catch (e) {
        warn('could not render item', it.id, e);
        a = el('li', 'item');
        b = el('li', 'item');
        a.dataset.id = b.dataset.id = it.id;
      }
      if (rec) {
        if (rec.a.classList.contains('is-new')) {
          a.classList.add('is-new');
          b.classList.add('is-new');
        }
        if (rec.a.parentNode) rec.a.replaceWith(a);
        if (rec.b.parentNode) rec.b.replaceWith(b);
        rec.a = a;
        rec.b = b;
        rec.sig = sig;
      } else {
        rec = { a, b, sig };
        this._els.set(it.id, rec);
      }
      if (isNew) {
        a.classList.add('is-new');
        b.classList.add('is-new');
        setTimeout(() => {
          const r = this._els.get(it.id);
          if (r) {
            r.a.classList.remove('is-new');
            r.b.classList.remove('is-new');
          }
        }, NEW_MARK_MS);
      }
      return rec;
    }

    _dropEl(id) {
      const rec = this._els.get(id);
      if (!rec) return;
      rec.a.remove();
      rec.b.remove();
      this._els.delete(id);
    }

    /** Put both runs' children in this._order, moving only what is out of place. */
    _placeAll() {
      const order = this._order;
      for (const which of ['a', 'b']) {
        const run = which === 'a' ? this._run : this._dup;
        for (let i = 0; i < order.length; i++) {
          const node = this._els.get(order[i])[which];
          const at = run.children[i] || null;
          if (node !== at) run.insertBefore(node, at);
        }
        while (run.children.length > order.length) run.lastElementChild.remove();
      }
    }

    _isRtl() {
      return this._bar.getAttribute('dir') === 'rtl';
    }

    /** Logical geometry of the first run: W, viewport width V, items' start/width. */
    _measure() {
      const rtl = this._isRtl();
      const c = this._run.getBoundingClientRect();
      const list = [];
      const pos = new Map();
      for (const li of this._run.children) {
        const r = li.getBoundingClientRect();
        const e = { id: li.dataset.id, start: rtl ? c.right - r.right : r.left - c.left, width: r.width };
        list.push(e);
        pos.set(e.id, e);
      }
      return { W: c.width, V: this._viewport.getBoundingClientRect().width, list, pos };
    }

    /** Index of the item under the visible start x. */
    static _indexAt(m, x) {
      let p = 0;
      for (let i = 0; i < m.list.length; i++) if (m.list[i].start <= x + 0.01) p = i;
      return p;
    }

    /** The first visible item not in `exclude`, with its on-screen offset from x. */
    _pickAnchor(m, x, exclude) {
      const n = m.list.length;
      if (!n || m.W <= 0) return null;
      const p = BreakingTicker._indexAt(m, x);
      let fallback = null;
      for (let k = 0; k < n; k++) {
        const i = (p + k) % n;
        const it = m.list[i];
        if (exclude && exclude.has(it.id)) continue;
        const cand = { id: it.id, off: it.start + (i < p ? m.W : 0) - x };
        if (cand.off < m.V) return cand;
        if (!fallback) fallback = cand;
      }
      return fallback;
    }

    /** Run `mutate`, then keep the anchor item where it was on screen. */
    _anchored(exclude, mutate) {
      const m = this._measure();
      const x = this._getX();
      const a = this._pickAnchor(m, x, exclude);
      mutate();
      const m2 = this._measure();
      const p = a && m2.pos.get(a.id);
      this._relayout(p ? p.start - a.off : x, m2);
    }

    _render(fresh) {
      this._finishGrows();
      const want = this._displayList();
      const wantIds = want.map((it) => it.id);
      const wantSet = new Set(wantIds);
      this._empty.hidden = want.length > 0 || !this._hadSnapshot;
      if (this._connected) this.toggleAttribute('data-empty', want.length === 0);

      const scrolling = () => this._mode === 'scroll' && !this._reduced && this._order.length > 0;
      if (scrolling()) {
        // 1. gone (killed, held, expired, pushed out): disappear at once
        const gone = this._order.filter((id) => !wantSet.has(id));
        if (gone.length) {
          this._anchored(new Set(gone), () => {
            for (const id of gone) this._dropEl(id);
            this._order = this._order.filter((id) => wantSet.has(id));
          });
        }
      }
      if (scrolling()) {
        // 2. changed in place (corrected, pinned, extended...)
        const changed = want.filter((it) => this._els.has(it.id) && this._els.get(it.id).sig !== signature(it));
        if (changed.length) this._anchored(null, () => { for (const it of changed) this._ensureEl(it, false); });
        // 3. back on air but not news (e.g. moved up into the top max-items): on-air place
        const late = want.filter((it) => !this._els.has(it.id) && !fresh.has(it.id));
        if (late.length && scrolling()) {
          this._anchored(null, () => {
            for (const it of late) {
              this._ensureEl(it, false);
              const wi = wantIds.indexOf(it.id);
              let at = this._order.length;
              for (let j = wi - 1; j >= 0; j--) {
                const k = this._order.indexOf(wantIds[j]);
                if (k >= 0) { at = k + 1; break; }
              }
              this._order.splice(at, 0, it.id);
            }
            this._placeAll();
          });
        }
        // 4. news: at the visible start
        const group = want.filter((it) => !this._els.has(it.id));
        if (group.length && scrolling()) this._insertFresh(group);
      }
      if (!scrolling()) {
        // still (fits, reduced motion, or nothing yet): exactly the on-air order
        for (const id of Array.from(this._els.keys())) if (!wantSet.has(id)) this._dropEl(id);
        for (const it of want) this._ensureEl(it, fresh.has(it.id));
        this._order = wantIds;
        this._placeAll();
        const m = this._measure();
        this._relayout(0, m);
        this._grow(wantIds.filter((id) => fresh.has(id)), m);
      }
      if (!isRotation(this._order, wantIds)) this._scheduleReorder();
    }

    _insertFresh(group) {
      const m = this._measure();
      const x = this._getX();
      const n = m.list.length;
      const p = BreakingTicker._indexAt(m, x);
      const P = m.list[p];
      const fStart = p + 1 < n ? m.list[p + 1].start : m.W;
      const dP = x - P.start; // how much of P has scrolled away
      const dF = fStart - x; // where the next boundary is on screen
      let at;
      let x2;
      if (dP < 0.5 || dF > m.V * 0.5) {
        at = p; // before P: the news starts exactly at the visible start
        x2 = P.start;
      } else {
        at = p + 1; // at the next boundary, close to the start: nothing moves
        x2 = x;
      }
      const ids = group.map((it) => it.id);
      for (const it of group) this._ensureEl(it, true);
      this._order.splice(at, 0, ...ids);
      this._placeAll();
      const m2 = this._measure();
      this._relayout(x2, m2); // with the final width: the loop stays seamless
      this._grow(ids, m2);
    }

    /** Open new items' space smoothly: the others slide aside instead of jumping. */
    _grow(ids, m) {
      if (this._reduced || !ids.length || typeof Element.prototype.animate !== 'function') return;
      const token = ++this._growToken;
      const anims = [];
      for (const id of ids) {
        const rec = this._els.get(id);
        const e = m.pos.get(id);
        if (!rec || !e || e.width <= 0) continue;
        for (const li of [rec.a, rec.b]) {
          anims.push(li.animate([{ width: '0px' }, { width: e.width + 'px' }], {
            duration: Math.min(Math.max(e.width * 0.8, GROW_MIN_MS), GROW_MAX_MS),
            easing: 'cubic-bezier(.3,.1,.3,1)',
          }));
        }
      }
      this._grows = anims;
      this._growing = anims.length > 0;
      Promise.all(anims.map((an) => an.finished.catch(() => null))).then(() => {
        if (token !== this._growToken) return;
        this._grows = [];
        this._growing = false;
        this._relayout(this._getX());
      });
    }

    _finishGrows() {
      if (!this._grows.length) return;
      const anims = this._grows;
      this._grows = [];
      this._growing = false;
      this._growToken++;
      for (const a of anims) {
        try { a.finish(); } catch (e) { /* already done */ }
      }
    }

    _scheduleReorder() {
      if (this._reorderTimer) return;
      this._reorderSince = Date.now();
      this._reorderTimer = setInterval(() => {
        const force = Date.now() - this._reorderSince > REORDER_FORCE_MS;
        if (this._tryReorder(force)) {
          clearInterval(this._reorderTimer);
          this._reorderTimer = 0;
        }
      }, REORDER_TICK_MS);
    }

    /**
     * Put the rendered cycle back into on-air order when every junction on screen is also a
     * junction of the on-air order: then nothing visible moves. True when done.
     */
    _tryReorder(force) {
      const wantIds = this._displayList().map((it) => it.id);
      if (isRotation(this._order, wantIds)) return true;
      if (this._mode !== 'scroll') {
        this._render(new Set());
        return true;
      }
      if (this._growing) return false;
      const n = wantIds.length;
      if (n !== this._order.length) return false;
      const succ = new Map();
      wantIds.forEach((id, i) => succ.set(id, wantIds[(i + 1) % n]));
      const m = this._measure();
      const x = this._getX();
      let ok = true;
      if (!force) {
        const p = BreakingTicker._indexAt(m, x);
        let prev = null;
        for (let k = 0; k < 2 * n + 1; k++) {
          const i = (p + k) % n;
          const off = m.list[i].start + Math.floor((p + k) / n) * m.W - x;
          if (off >= m.V) break;
          const id = m.list[i].id;
          if (prev !== null && succ.get(prev) !== id) { ok = false; break; }
          prev = id;
        }
      }
      if (!ok) return false;
      this._anchored(null, () => {
        this._order = wantIds.slice();
        this._placeAll();
      });
      return true;
    }

    _dirSign() {
      return this._isRtl() ? 1 : -1;
    }

    _getX() {
      if (this._anim && this._animW > 0 && this._animDur > 0) {
        const t = Number(this._anim.currentTime) || 0;
        return mod((t / this._animDur) * this._animW, this._animW);
      }
      return this._x;
    }

    _killAnim() {
      if (this._anim) {
        try { this._anim.cancel(); } catch (e) { /* gone */ }
      }
      this._anim = null;
      this._animW = 0;
      this._animSign = 0;
      this._x = 0;
    }

    /** Decide scroll vs still from the geometry, and set the loop for width W at offset x. */
    _relayout(x, m) {
      if (!this._connected) return;
      m = m || this._measure();
      const canAnimate = typeof this._track.animate === 'function';
      const scroll = !this._reduced && canAnimate && m.list.length > 0 && m.W > m.V + 1;
      if (scroll) {
        const W = m.W;
        const sign = this._dirSign();
        const dur = (W / this._speed()) * 1000;
        const frames = [
          { transform: 'translate3d(0, 0, 0)' },
          { transform: 'translate3d(' + (sign * W) + 'px, 0, 0)' },
        ];
        if (!this._anim || this._animSign !== sign) {
          this._killAnim();
          this._anim = this._track.animate(frames, { duration: dur, iterations: Infinity, easing: 'linear' });
          this._anim.pause();
        } else if (this._animW !== W || this._animDur !== dur) {
          this._anim.effect.setKeyframes(frames);
          this._anim.effect.updateTiming({ duration: dur });
        }
        this._animW = W;
        this._animDur = dur;
        this._animSign = sign;
        this._anim.currentTime = (mod(x, W) / W) * dur;
        this._mode = 'scroll';
      } else {
        if (this._anim) this._killAnim();
        this._mode = 'static';
        this._x = 0;
      }
      const shown = this._reduced ? 'reduced' : this._mode;
      this._bar.dataset.mode = shown;
      if (this.getAttribute('data-mode') !== shown) this.setAttribute('data-mode', shown);
      // a still list the reader can scroll with the keyboard when it overflows
      if (this._reduced && m.W > m.V + 1) this._viewport.tabIndex = 0;
      else this._viewport.removeAttribute('tabindex');
      this._btn.hidden = this._reduced;
      this._syncRun();
    }

    _syncRun() {
      const a = this._anim;
      if (!a) return;
      const run = this._mode === 'scroll' && !this._userPaused && !this._hover && !this._focus;
      if (run && a.playState !== 'running') a.play();
      else if (!run && a.playState === 'running') a.pause();
    }

    _updateFocus() {
      // pause for keyboard focus (focus-visible), not for a mouse click on the button
      const active = this._root.activeElement;
      let f = false;
      if (active) {
        try { f = active.matches(':focus-visible'); } catch (e) { f = true; }
      }
      this._focus = f;
      this._syncRun();
    }

    /** A keyboard user tabbed to a link in the moving run: bring its item to the start. */
    _revealFocused(target) {
      if (this._mode !== 'scroll' || !target || !this._run.contains(target)) return;
      const li = target.closest('.item');
      if (!li) return;
      const m = this._measure();
      const e = m.pos.get(li.dataset.id);
      if (!e) return;
      const x = this._getX();
      const off = e.start - x;
      if (off >= 0 && off + e.width <= m.V) return;
      this._relayout(e.start, m);
    }

    _onMotion() {
      this._reduced = !!(this._mq && this._mq.matches);
      this._finishGrows();
      this._killAnim();
      this._mode = 'static';
      this._render(new Set());
    }

    // -- connection ------------------------------------------------------------------------

    _base() {
      const raw = (this.getAttribute('server') || '').trim() || DEFAULT_SERVER;
      try {
        const u = new URL(raw, document.baseURI);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
        return { u, path: u.pathname.replace(/\/+$/, '') };
      } catch (e) {
        return null;
      }
    }

    _channel() {
      return (this.getAttribute('channel') || '').trim() || 'en';
    }

    _url(kind) {
      const b = this._base();
      if (!b) return null;
      const ch = encodeURIComponent(this._channel());
      const q = this._cursor ? '?cursor=' + encodeURIComponent(this._cursor) : '';
      if (kind === 'ws') {
        const proto = b.u.protocol === 'https:' ? 'wss:' : 'ws:';
        return proto + '//' + b.u.host + b.path + '/ws/' + ch + q;
      }
      if (kind === 'sse') return b.u.origin + b.path + '/sse/' + ch + q;
      return b.u.origin + b.path + '/api/channels/' + ch + '/snapshot';
    }

    _feedKey() {
      const b = this._base();
      return (b ? b.u.origin + b.path : '') + '|' + this._channel();
    }

    /** Another server or channel: nothing of the old feed applies. */
    _resetFeed() {
      this._model.clear();
      this._cursor = null;
      this._missed = null;
      this._info = null;
      this._hadSnapshot = false;
      this._everLive = false;
      this._announced.clear();
      this._applyInfo();
      this._render(new Set());
      this._emitUpdate();
      this._setState('connecting');
    }

    _start() {
      this._stop();
      if (!this._connected) return;
      const key = this._feedKey();
      if (this._feed !== undefined && this._feed !== key) this._resetFeed();
      this._feed = key;
      if (!this._base()) {
        warn('invalid server URL', this.getAttribute('server'));
        this._setState('error');
        return;
      }
      this._attempt = 0;
      this._openFails = 0;
      this._connectWs(false);
    }

    _stop() {
      this._gen++;
      clearTimeout(this._retryTimer);
      clearTimeout(this._pollTimer);
      for (const ws of [this._ws, this._probe]) {
        if (!ws) continue;
        try { ws.close(1000); } catch (e) { /* closing */ }
      }
      this._ws = null;
      this._probe = null;
      if (this._es) this._es.close();
      this._es = null;
      this._transport = null;
    }

    _fatal(why) {
      warn('stopped:', why);
      this._stop();
      this._setState('error');
    }

    _offlineState() {
      this._setState(this._everLive ? 'reconnecting' : 'connecting');
    }

    _backoff() {
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, this._attempt));
      this._attempt = Math.min(this._attempt + 1, 20);
      return base * (0.5 + Math.random()); // +-50 %
    }

    _connectWs(probe) {
      const gen = this._gen;
      const url = this._url('ws');
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        warn('cannot open websocket', e);
        if (!probe) this._wsClosed(1006, false, 0);
        return;
      }
      if (probe) this._probe = ws;
      else this._ws = ws;
      let opened = false;
      let openedAt = 0;
      ws.onopen = () => {
        if (gen !== this._gen) return;
        opened = true;
        openedAt = Date.now();
        this._openFails = 0;
        if (this._probe === ws) {
          // the websocket works again: leave the fallback
          this._probe = null;
          clearTimeout(this._pollTimer);
          if (this._es) this._es.close();
          this._es = null;
          this._ws = ws;
        }
        this._transport = 'ws';
        this._setState('live');
      };
      ws.onmessage = (e) => {
        if (gen !== this._gen || this._ws !== ws) return;
        if (typeof e.data !== 'string') {
          warn('ignored a binary frame');
          return;
        }
        this._onText(e.data);
      };
      ws.onclose = (e) => {
        if (gen !== this._gen) return;
        if (this._probe === ws) {
          this._probe = null; // the fallback goes on
          return;
        }
        if (this._ws !== ws) return;
        this._ws = null;
        this._wsClosed(e.code, opened, opened ? Date.now() - openedAt : 0);
      };
    }

    _wsClosed(code, opened, lived) {
      if (code === 1000 || code === 1008) {
        this._fatal(code === 1008 ? 'policy violation (1008)' : 'closed by the server (1000)');
        return;
      }
      if (lived >= STABLE_MS) this._attempt = 0;
      if (!opened) {
        this._openFails++;
        if (this._openFails >= WS_FAILS_BEFORE_FALLBACK && navigator.onLine !== false) {
          this._offlineState();
          this._startSse();
          return;
        }
      }
      this._offlineState();
      const delay = code === 1012 ? Math.random() * RESTART_JITTER_MS : this._backoff();
      const gen = this._gen;
      clearTimeout(this._retryTimer);
      this._retryTimer = setTimeout(() => {
        if (gen === this._gen) this._connectWs(false);
      }, delay);
    }

    _startSse() {
      if (typeof EventSource !== 'function') {
        this._startPoll();
        return;
      }
      const gen = this._gen;
      this._transport = 'sse';
      let es;
      try {
        es = new EventSource(this._url('sse'));
      } catch (e) {
        warn('cannot open SSE', e);
        this._startPoll();
        return;
      }
      this._es = es;
      let opened = false;
      const onMessage = (e) => {
        if (gen !== this._gen || this._es !== es) return;
        this._onText(e.data);
      };
      // event data is one frame, like the websocket's; accept named events too
      es.addEventListener('message', onMessage);
      es.addEventListener('snapshot', onMessage);
      es.addEventListener('events', onMessage);
      es.onopen = () => {
        if (gen !== this._gen || this._es !== es) return;
        opened = true;
        this._setState('live');
      };
      es.onerror = () => {
        if (gen !== this._gen || this._es !== es) return;
        if (!opened || es.readyState === 2 /* CLOSED */) {
          es.close();
          this._es = null;
          warn('SSE unavailable; polling');
          this._startPoll();
          return;
        }
        this._offlineState(); // the browser reconnects, with Last-Event-ID
      };
    }

    _startPoll() {
      this._transport = 'poll';
      this._pollCount = 0;
      this._pollOnce(this._gen);
    }

    _pollOnce(gen) {
      if (gen !== this._gen || this._transport !== 'poll') return;
      let ok = false;
      const url = this._url('poll');
      fetch(url, { cache: 'no-cache', credentials: 'omit', headers: { Accept: 'application/json' } })
        .then((r) => {
          if (!r.ok) throw new Error('HTTP ' + r.status);
          return r.text();
        })
        .then((text) => {
          if (gen !== this._gen || this._transport !== 'poll') return;
          ok = true;
          this._onText(text);
        })
        .catch(() => {
          if (gen === this._gen && this._transport === 'poll') this._offlineState();
        })
        .then(() => {
          if (gen !== this._gen || this._transport !== 'poll') return;
          this._pollCount++;
          if (!ok || this._pollCount % PROBE_EVERY_POLLS === 0) {
            if (!this._probe && !this._ws) this._connectWs(true);
          }
          clearTimeout(this._pollTimer);
          this._pollTimer = setTimeout(() => this._pollOnce(gen), POLL_MS);
        });
    }

    _onOnline() {
      if (!this._connected || this._state === 'error') return;
      if (this._transport === 'ws' && this._ws && this._ws.readyState === 1) {
        this._setState('live');
        return;
      }
      this._start(); // at once, back to the websocket, with the cursor
    }

    _onOffline() {
      if (this._connected && this._state === 'live') this._setState('reconnecting');
    }
  }

  customElements.define(TAG, BreakingTicker);
})();
