/*!
 * desk.js: the editors' desk (/desk). No framework, no build, no inline script: the page's
 * CSP is script-src 'self'. Every piece of item text goes into the page with textContent,
 * never as HTML.
 *
 * - Compose: live character count (the server's rule: NFC, trimmed, code points), errors
 *   next to their fields, Ctrl/Cmd+Enter publishes, a preview built by ticker.js itself.
 * - The board: /desk/api/events (Server-Sent Events) sends the whole desk state whenever it
 *   changes; items are updated in place (keyed by id), so focus and open dialogs survive.
 * - Actions: correct / kill / extend in dialogs (kill asks for a reason and confirmation),
 *   hold / release / pin / unpin at once. Every write sends the session's CSRF token.
 * - Every visible string comes from the page's table (ticker.desk.texts, in the user's
 *   language) through i18n.js (TickerText), and so do numbers and times.
 */
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const CSRF = (document.querySelector('meta[name="ticker-csrf"]') || {}).content || '';
  const ROLE = body.dataset.role || 'contributor';
  const ME = body.dataset.user || '';
  const CAN_EDIT = ROLE === 'editor' || ROLE === 'admin';
  const MAX = Number(body.dataset.maxText) || 280;
  const TTL_DEFAULTS = {};
  (body.dataset.ttlDefaults || '').split(',').forEach((pair) => {
    const [k, v] = pair.split(':');
    if (k && v) TTL_DEFAULTS[k] = Number(v);
  });
  const { say, nodes, count: plural, number, list: listed, relative } = window.TickerText;
  const LANG = window.TickerText.LANG;
  const DIR = document.documentElement.dir || 'ltr';
  const URGENCIES = ['flash', 'urgent', 'breaking'];
  const urgencyLabel = (u) => (URGENCIES.includes(u) ? say('urgency_' + u) : u);
  const OPS = ['correct', 'hold', 'release', 'pin', 'unpin', 'extend', 'kill', 'confirm'];
  const TWIN = { hold: 'release', release: 'hold', pin: 'unpin', unpin: 'pin' };

  let offset = 0; // server clock - local clock (ms)
  let current = null; // the last desk state
  let idem = newIdem();

  function newIdem() {
    if (window.crypto && crypto.randomUUID) return 'desk-' + crypto.randomUUID();
    return 'desk-' + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  const now = () => Date.now() + offset;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /** The urgency's badge, in the desk's language (laid out by the line it starts). */
  function badge(u) {
    const b = el('span', 'badge u-' + u, urgencyLabel(u));
    b.lang = LANG;
    return b;
  }

  /** "by <b>name</b>", in the desk's language. */
  function byLine(name) {
    const by = el('span', 'by');
    by.append(nodes('by', { name: el('b', null, name) }));
    return by;
  }

  /** The server's length rule: NFC, trimmed, counted in code points. */
  function textLength(s) {
    return Array.from(s.normalize('NFC').trim()).length;
  }

  // -- HTTP ----------------------------------------------------------------------------------

  async function api(method, url, payload) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method !== 'GET') init.headers['X-CSRF-Token'] = CSRF;
    if (payload !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      return { ok: false, status: 0, body: { message: say('no_connection') } };
    }
    let data = {};
    try {
      data = (await res.json()) || {};
    } catch (e) {
      data = {};
    }
    if (res.status === 401) signedOut();
    return { ok: res.ok, status: res.status, body: data };
  }

  function signedOut() {
    window.location.assign('/login?next=/desk');
  }

  // -- errors next to their fields -----------------------------------------------------------

  function setError(id, message, input) {
    const box = $(id);
    if (!box) return false;
    box.textContent = message || '';
    box.hidden = !message;
    const target = input || null;
    if (target) {
      if (message) target.setAttribute('aria-invalid', 'true');
      else target.removeAttribute('aria-invalid');
    }
    return true;
  }

  function clearErrors(form) {
    form.querySelectorAll('.error, .form-error').forEach((p) => {
      p.textContent = '';
      p.hidden = true;
    });
    form.querySelectorAll('[aria-invalid]').forEach((i) => i.removeAttribute('aria-invalid'));
  }

  /** Show a server error next to its field (`map`: field -> [error id, input]); else at the top. */
  function showServerError(res, map, formErrorId) {
    const b = res.body || {};
    const message = b.message || (res.status ? say('server_said', { status: res.status })
      : say('no_connection'));
    const hit = b.field && map[b.field];
    if (hit && setError(hit[0], message, hit[1])) {
      if (hit[1] && hit[1].focus) hit[1].focus();
      return;
    }
    setError(formErrorId, message);
  }

  // -- the preview: ticker.js renders it -----------------------------------------------------

  const Preview = (function () {
    let probe = null;
    function ticker() {
      if (probe) return probe;
      const Ticker = window.customElements && customElements.get('breaking-ticker');
      if (!Ticker) return null;
      // Never attached to the document, so it never connects: it only lends its styles and
      // its item renderer, so the preview is exactly what readers get.
      probe = document.createElement('breaking-ticker');
      return probe;
    }

    function build(host, channel, item) {
      const t = ticker();
      const root = host.shadowRoot || host.attachShadow({ mode: 'open' });
      root.replaceChildren();
      if (!t || !t.shadowRoot || typeof t.previewItem !== 'function') {
        const plain = el('p', 'plain');
        plain.dir = channel.dir;
        plain.textContent = item ? item.text : '';
        root.append(plain);
        return;
      }
      root.adoptedStyleSheets = t.shadowRoot.adoptedStyleSheets;
      const bar = t.shadowRoot.querySelector('.bar').cloneNode(true);
      bar.setAttribute('dir', channel.dir);
      bar.setAttribute('lang', channel.lang);
      bar.dataset.state = 'live';
      bar.dataset.mode = 'reduced'; // still, and scrollable when the line is long
      bar.querySelector('.label-text').textContent = channel.title;
      bar.querySelectorAll('button, a').forEach((b) => { b.tabIndex = -1; });
      const run = bar.querySelector('.run');
      const dup = bar.querySelector('.dup');
      const empty = bar.querySelector('.empty');
      dup.replaceChildren();
      run.replaceChildren();
      if (item) {
        const li = t.previewItem(item, { name: channel.name, lang: channel.lang,
                                         dir: channel.dir, title: channel.title });
        li.querySelectorAll('a').forEach((a) => { a.tabIndex = -1; });
        run.append(li);
        empty.hidden = true;
      } else {
        empty.textContent = say('preview_empty');
        empty.lang = LANG; // the desk's words, in a bar laid out for the edition
        empty.dir = DIR;
        empty.hidden = false;
      }
      root.append(bar);
    }
    return { build };
  })();

  // -- compose -------------------------------------------------------------------------------

  const form = $('compose');
  const text = $('text');
  const count = $('text-count');
  const channelBoxes = () => Array.from(form.querySelectorAll('input[name="channels"]'));
  const urgency = () => (form.querySelector('input[name="urgency"]:checked') || {}).value || 'breaking';
  const FIELD_MAP = {
    text: ['text-error', text], source: ['source-error', $('source')],
    channels: ['channels-error', channelBoxes()[0]], urgency: ['urgency-error', null],
    link: ['link-error', $('link')], tags: ['tags-error', $('tags')], ttl: ['ttl-error', $('ttl')],
    expires: ['ttl-error', $('ttl')], at: ['at-error', $('at')],
  };

  function channelInfo(box) {
    return { name: box.value, dir: box.dataset.dir || 'ltr', lang: box.dataset.lang || box.value,
      title: box.dataset.title || 'Breaking' };
  }

  function updateCount() {
    const n = textLength(text.value);
    const values = { n: number(n), max: number(MAX), extra: number(n - MAX) };
    count.textContent = say(n > MAX ? 'count_over' : 'count', values);
    count.classList.toggle('over', n > MAX);
    count.classList.toggle('near', n <= MAX && n > MAX - 20);
  }

  function draftItem() {
    const value = text.value.replace(/\s+/g, ' ').trim();
    if (!value) return null;
    const link = $('link').value.trim();
    return {
      id: 'preview', text: value, source: $('source').value.trim() || null, urgency: urgency(),
      link: /^https:\/\/\S+$/.test(link) ? link : null, tags: [], ts: now(), expires: null,
      version: 1, corrected: false, pinned: false,
    };
  }

  function updatePreview() {
    const box = $('preview');
    const item = draftItem();
    const chosen = channelBoxes().filter((b) => b.checked);
    const keep = new Set(chosen.map((b) => b.value));
    Array.from(box.children).forEach((c) => { if (!keep.has(c.dataset.channel)) c.remove(); });
    chosen.forEach((b) => {
      const info = channelInfo(b);
      let wrap = box.querySelector('[data-channel="' + CSS.escape(info.name) + '"]');
      if (!wrap) {
        wrap = el('figure', 'preview');
        wrap.dataset.channel = info.name;
        const cap = el('figcaption', 'muted',
          info.dir === 'rtl' ? say('preview_rtl', { edition: info.name }) : info.name);
        const host = el('div', 'preview-ticker');
        wrap.append(cap, host);
        box.append(wrap);
      }
      Preview.build(wrap.querySelector('.preview-ticker'), info, item);
    });
  }

  function updateTtlHint() {
    const first = $('ttl').options[0];
    const secs = TTL_DEFAULTS[urgency()];
    if (first && secs) {
      first.textContent = say('ttl_default', { urgency: urgencyLabel(urgency()),
        duration: window.TickerText.duration(secs) });
    }
  }

  function onComposeInput(e) {
    if (e.target === text && /[\r\n]/.test(text.value)) {
      // One line: a pasted line break becomes a space.
      const at = text.selectionStart;
      text.value = text.value.replace(/[\r\n]+/g, ' ');
      text.setSelectionRange(at, at);
    }
    if (e.target === text) updateCount();
    if (e.target.name === 'urgency') updateTtlHint();
    updatePreview();
  }

  function composeBody() {
    const payload = { text: text.value, channels: channelBoxes().filter((b) => b.checked).map((b) => b.value),
      urgency: urgency(), idem };
    const source = $('source').value.trim();
    if (source) payload.source = source;
    const link = $('link').value.trim();
    if (link) payload.link = link;
    // "Lebanon, Ceasefire" -> ["lebanon", "ceasefire"]: the API takes a list of tags.
    const tags = $('tags').value.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
    if (tags.length) payload.tags = tags;
    if ($('ttl').value) payload.ttl = Number($('ttl').value);
    const at = $('at').value;
    if (at) {
      // A wall-clock time in the editor's zone; converting it does not depend on their clock.
      const when = new Date(at).getTime();
      payload.at = Number.isFinite(when) ? when : at;
    }
    return payload;
  }

  function checkCompose(payload) {
    let first = null;
    const fail = (id, msg, input) => {
      setError(id, msg, input);
      if (!first) first = input;
    };
    const n = textLength(payload.text);
    if (n === 0) fail('text-error', say('write_first'), text);
    else if (n > MAX) fail('text-error', tooLong(n), text);
    if (!payload.channels.length) fail('channels-error', say('choose_channel'), channelBoxes()[0]);
    if (payload.link && !/^https:\/\/\S+$/.test(payload.link)) {
      fail('link-error', say('link_https'), $('link'));
    }
    if (first) first.focus();
    return !first;
  }

  let publishing = false;
  async function publish(e) {
    if (e) e.preventDefault();
    if (publishing) return;
    clearErrors(form);
    $('compose-status').textContent = '';
    const payload = composeBody();
    if (!checkCompose(payload)) return;
    publishing = true;
    const button = $('publish');
    const label = button.textContent;
    button.disabled = true;
    button.textContent = say(CAN_EDIT ? 'publishing' : 'sending');
    try {
      const res = await api('POST', '/desk/api/items', payload);
      if (!res.ok) {
        showServerError(res, FIELD_MAP, 'compose-error');
        return;
      }
      const b = res.body;
      let message;
      if (b.items) {
        message = say('published', { channels: listed(b.items.map((i) => i.channel)), time: clock(now()) });
      } else if (b.kind === 'scheduled') {
        message = say('scheduled_for', { time: clock(b.at), channels: listed(b.channels) });
      } else {
        message = say('sent_for_approval');
      }
      $('compose-status').textContent = message;
      idem = newIdem();
      ['text', 'source', 'link', 'tags', 'at'].forEach((id) => { $(id).value = ''; });
      $('ttl').value = '';
      $('u-breaking').checked = true; // a flash is the exception: never carried over by mistake
      updateCount();
      updateTtlHint();
      updatePreview();
      text.focus();
      refresh();
    } finally {
      publishing = false;
      button.disabled = false;
      button.textContent = label;
    }
  }

  function isSubmitChord(e) {
    return e.key === 'Enter' && (e.ctrlKey || e.metaKey);
  }

  form.addEventListener('input', onComposeInput);
  form.addEventListener('change', onComposeInput);
  form.addEventListener('submit', publish);
  form.addEventListener('keydown', (e) => {
    if (isSubmitChord(e)) {
      publish(e);
    } else if (e.key === 'Enter' && e.target === text && !e.shiftKey && !e.altKey) {
      e.preventDefault(); // one line; Ctrl/Cmd+Enter publishes
    }
  });

  // -- time ----------------------------------------------------------------------------------

  function tooLong(n) {
    return say('too_long', { n: number(n), max: number(MAX) });
  }
  function ago(ts) {
    const d = now() - ts;
    return d < 10000 ? say('just_now') : relative(-d);
  }
  function until(expires) {
    const d = expires - now();
    return say(d > 0 ? 'expires' : 'expired', { when: relative(d) });
  }
  function clock(ms) {
    // An absolute time (no clock offset involved), with the day when it is not about now.
    return window.TickerText.clock(ms, Math.abs(ms - now()) > 20 * 3600 * 1000);
  }

  function tick() {
    document.querySelectorAll('[data-ago]').forEach((e) => { e.textContent = ago(Number(e.dataset.ago)); });
    document.querySelectorAll('[data-until]').forEach((e) => {
      const t = Number(e.dataset.until);
      e.textContent = until(t);
      e.classList.toggle('soon', t - now() < 5 * 60 * 1000);
    });
    document.querySelectorAll('[data-in]').forEach((e) => {
      const t = Number(e.dataset.in);
      e.textContent = t > now() ? relative(t - now()) : say('due_now');
    });
  }

  // -- the board -----------------------------------------------------------------------------

  const board = $('onair');
  const rows = new Map(); // "channel/id" -> {li, sig}

  function signature(it) {
    return JSON.stringify([it.text, it.source, it.urgency, it.link, it.version, it.corrected,
      it.pinned, it.status, it.by, it.expires, it.tags, it.reach, it.versions, it.needs_update]);
  }

  /** [[edition, id], ...] of the item's other versions. */
  function otherVersions(channelName, it) {
    return Object.entries(it.versions || {}).filter(([name, id]) => !(name === channelName && id === it.id));
  }
  const isTranslation = (channelName, it) => it.story && it.story !== channelName + ':' + it.id;
  function channelByName(name) {
    return current && current.channels.find((c) => c.name === name);
  }
  /** The editions (channel objects) that have no version of the item's story yet. */
  function missingEditions(it) {
    if (!current) return [];
    const have = it.versions || {};
    return current.channels.filter((c) => !(c.name in have));
  }

  function itemRow(channel, it) {
    const li = el('li', 'item');
    li.dataset.id = it.id;
    li.dataset.channel = channel.name;
    li.dataset.status = it.status;
    li.dataset.urgency = it.urgency;
    const textId = 't-' + channel.name + '-' + it.id;
    const line = el('p', 'line');
    line.dir = channel.dir;
    line.lang = channel.lang;
    line.append(badge(it.urgency));
    if (it.source) {
      const src = el('span', 'src');
      src.append(el('bdi', null, it.source), document.createTextNode(': '));
      line.append(src);
    }
    const t = el('bdi', 'text', it.text);
    t.id = textId;
    line.append(t);
    const flags = el('span', 'flags');
    const flag = (cls, key, values) => {
      const f = el('span', 'flag ' + cls, say(key, values));
      f.lang = LANG; // in the desk's language and direction, whatever the line's
      f.dir = DIR;
      flags.append(f);
    };
    if (it.corrected) flag('corrected', 'flag_corrected', { version: number(it.version) });
    if (it.pinned) flag('pinned', 'flag_pinned');
    if (it.status === 'held') flag('held', 'flag_held');
    if (it.status === 'expired') flag('expired', 'flag_expired');
    if (it.status === 'over_limit') flag('over', 'flag_over', { max: number(channel.max_items) });
    if (it.needs_update) flag('needs-update', 'flag_needs_update', { edition: it.needs_update });
    line.append(flags);

    const facts = el('p', 'facts');
    const age = el('span', 'age', ago(it.ts));
    age.dataset.ago = String(it.ts);
    const exp = el('span', 'expiry', until(it.expires));
    exp.dataset.until = String(it.expires);
    const when = el('span', 'at', say('on_air_since', { time: clock(it.ts) }));
    facts.append(byLine(it.by || say('by_unknown')), age, exp, when);
    if (typeof it.reach === 'number') {
      // Connections the item was written to, over every node (flushed each second).
      facts.append(el('span', 'reach', plural('reach', it.reach)));
    }
    const others = otherVersions(channel.name, it);
    if (others.length) {
      const editions = document.createDocumentFragment();
      others.forEach(([name], n) => {
        if (n) editions.append(say('list_sep'));
        editions.append(el('b', null, name));
      });
      const v = el('span', 'versions');
      v.append(nodes(isTranslation(channel.name, it) ? 'translation_also_in' : 'also_in',
        { editions }));
      facts.append(v);
    }
    if (it.link) {
      const a = el('a', 'story', say('story_link'));
      a.href = it.link;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      facts.append(a);
    }
    li.append(line, facts);

    if (CAN_EDIT) {
      const actions = el('div', 'actions');
      actions.setAttribute('role', 'group');
      actions.setAttribute('aria-label', say('actions'));
      actions.setAttribute('aria-describedby', textId);
      const button = (op, cls) => {
        const b = el('button', cls || null, say('op_' + op));
        b.type = 'button';
        b.dataset.op = op;
        b.setAttribute('aria-describedby', textId);
        actions.append(b);
      };
      button('correct');
      if (it.needs_update) button('confirm');
      if (missingEditions(it).length) button('translate');
      button(it.status === 'held' ? 'release' : 'hold');
      button(it.pinned ? 'unpin' : 'pin');
      button('extend');
      button('kill', 'danger');
      li.append(actions);
    }
    return li;
  }

  function channelSection(channel) {
    let section = board.querySelector('section[data-channel="' + CSS.escape(channel.name) + '"]');
    if (!section) {
      section = el('section', 'channel');
      section.dataset.channel = channel.name;
      const h = el('h3', 'channel-title');
      const name = el('span', 'name', channel.name);
      const title = el('span', 'title', channel.title);
      title.lang = channel.lang;
      title.dir = channel.dir;
      const n = el('span', 'n');
      h.append(name, ' ', title, ' ', n);
      const ul = el('ul', 'items');
      const empty = el('p', 'empty muted', say('nothing_on_air'));
      const queue = el('section', 'queue');
      queue.hidden = true;
      const qh = el('h4', 'queue-title');
      qh.append(el('span', null, say('to_translate', { edition: channel.name })), ' ', el('span', 'qn'));
      queue.append(qh, el('ul', 'queue-items'));
      section.append(h, queue, ul, empty);
      board.append(section);
    }
    return section;
  }

  function renderBoard(state) {
    const focused = document.activeElement;
    const focusKey = focused && focused.closest && focused.closest('li.item') && focused.dataset.op
      ? { li: focused.closest('li.item'), op: focused.dataset.op } : null;
    const seen = new Set();
    state.channels.forEach((channel) => {
      const section = channelSection(channel);
      const ul = section.querySelector('ul.items');
      const live = channel.items.filter((i) => i.status === 'on_air').length;
      const more = channel.items.length - live;
      section.querySelector('.n').textContent = more > 0
        ? say('on_air_more', { n: number(live), more: number(more) })
        : say('on_air', { n: number(live) });
      section.querySelector('.empty').hidden = channel.items.length > 0;
      renderQueue(section, channel);
      let prev = null;
      channel.items.forEach((it) => {
        const key = channel.name + '/' + it.id;
        seen.add(key);
        const sig = signature(it);
        let rec = rows.get(key);
        if (!rec || rec.sig !== sig) {
          const li = itemRow(channel, it);
          if (rec) rec.li.replaceWith(li);
          rec = { li, sig };
          rows.set(key, rec);
        }
        const want = prev ? prev.nextSibling : ul.firstChild;
        if (want !== rec.li) ul.insertBefore(rec.li, want);
        prev = rec.li;
      });
    });
    rows.forEach((rec, key) => {
      if (!seen.has(key)) {
        rec.li.remove();
        rows.delete(key);
      }
    });
    board.querySelectorAll('section.channel').forEach((s) => {
      if (!state.channels.some((c) => c.name === s.dataset.channel)) s.remove();
    });
    if (focusKey && document.activeElement !== focused) {
      // The item was redrawn: put the focus back on the same action (or its twin).
      focusAction(focusKey.li.dataset.channel, focusKey.li.dataset.id, focusKey.op);
    }
  }

  /** The edition's translation queue: flash and urgent lines of other editions, oldest first. */
  function renderQueue(section, channel) {
    const queue = section.querySelector('section.queue');
    const list = queue.querySelector('ul.queue-items');
    const entries = CAN_EDIT ? (channel.to_translate || []) : [];
    queue.hidden = entries.length === 0;
    queue.querySelector('.qn').textContent = say('queue_count', { n: number(entries.length) });
    const sig = JSON.stringify(entries.map((q) => [q.channel, q.id, q.text, q.urgency]));
    if (list.dataset.sig === sig) return;
    const focused = document.activeElement;
    const refocus = focused && list.contains(focused) ? focused.dataset.queueAction : null;
    list.dataset.sig = sig;
    list.replaceChildren();
    entries.forEach((q) => {
      const from = channelByName(q.channel) || { dir: 'auto', lang: '' };
      const li = el('li', 'queue-item');
      li.dataset.story = q.story;
      li.dataset.urgency = q.urgency;
      const line = el('p', 'line');
      line.append(badge(q.urgency), el('span', 'from', q.channel), ' ');
      const t = el('bdi', 'text', q.text);
      t.dir = from.dir;
      t.lang = from.lang;
      line.append(t);
      const age = el('span', 'age', ago(q.ts));
      age.dataset.ago = String(q.ts);
      const actions = el('div', 'actions');
      const b1 = el('button', 'primary', say('op_translate'));
      b1.type = 'button';
      b1.dataset.queueAction = 'translate';
      const b2 = el('button', null, say('dismiss'));
      b2.type = 'button';
      b2.dataset.queueAction = 'dismiss';
      actions.append(b1, b2);
      li.append(line, age, actions);
      list.append(li);
    });
    if (refocus) {
      const b = list.querySelector('[data-queue-action="' + refocus + '"]');
      if (b) b.focus();
    }
  }

  function queueEntry(li) {
    const section = li.closest('section.channel');
    const channel = current && current.channels.find((c) => c.name === section.dataset.channel);
    const q = channel && (channel.to_translate || []).find((x) => x.story === li.dataset.story);
    return q ? { edition: channel.name, q } : null;
  }

  board.addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-queue-action]');
    if (!b) return;
    const found = queueEntry(b.closest('li.queue-item'));
    if (!found) return;
    const { edition, q } = found;
    if (b.dataset.queueAction === 'translate') {
      dialogs.translate({ channel: q.channel, item: q, edition }, b);
      return;
    }
    await busyWith(b, async () => {
      const res = await api('POST', '/desk/api/translate/' + encodeURIComponent(edition) + '/dismiss',
        { story: q.story });
      if (res.ok) {
        announce(aboutLine('dismissed', { edition, text: q.text }));
        refresh();
      }
      return res;
    });
  });

  // -- one edition or all --------------------------------------------------------------------

  const VIEW_KEY = 'ticker-desk-edition';
  let viewChosen = false;
  function showEdition(name) {
    board.querySelectorAll('section.channel').forEach((s) => {
      s.hidden = Boolean(name) && s.dataset.channel !== name;
    });
    board.dataset.edition = name || '';
  }
  function chooseView(name) {
    const input = document.querySelector('input[name="edition-view"][value="' + CSS.escape(name || '') + '"]');
    if (!input) return false;
    input.checked = true;
    showEdition(name);
    return true;
  }
  $('edition-view').addEventListener('change', (e) => {
    if (e.target.name !== 'edition-view') return;
    viewChosen = true;
    try { localStorage.setItem(VIEW_KEY, e.target.value); } catch (err) { /* private mode */ }
    showEdition(e.target.value);
  });
  /** First state: the editor's last choice, else their one default edition; and the
   *  compose form starts on their default editions. */
  function applyDefaults(state) {
    if (viewChosen) return;
    viewChosen = true;
    const mine = (state.me && Array.isArray(state.me.editions)) ? state.me.editions : [];
    let saved = null;
    try { saved = localStorage.getItem(VIEW_KEY); } catch (err) { /* private mode */ }
    if (saved === null || !chooseView(saved)) chooseView(mine.length === 1 ? mine[0] : '');
    if (mine.length) {
      document.querySelectorAll('input[name="channels"]').forEach((c) => {
        c.checked = mine.includes(c.value);
      });
      updatePreview();
    }
  }

  function focusAction(channel, id, op) {
    const rec = rows.get(channel + '/' + id);
    if (!rec) return;
    const b = rec.li.querySelector('[data-op="' + op + '"]') ||
      rec.li.querySelector('[data-op="' + (TWIN[op] || op) + '"]');
    if (b) b.focus();
  }

  function jobRow(job, kind) {
    const li = el('li', 'job');
    li.dataset.job = job.id;
    const line = el('p', 'line');
    line.append(badge(job.urgency));
    if (job.source) {
      const src = el('span', 'src');
      src.append(el('bdi', null, job.source), document.createTextNode(': '));
      line.append(src);
    }
    const t = el('bdi', 'text', job.text);
    t.id = 'job-' + job.id;
    line.append(t);
    const facts = el('p', 'facts');
    facts.append(byLine(job.by), el('span', 'channels', say('job_to', { channels: listed(job.channels) })));
    if (job.at) {
      const at = el('span', 'at', say('job_at', { time: clock(job.at) }));
      const left = el('span', 'left');
      left.dataset.in = String(job.at);
      facts.append(at, left);
    }
    const age = el('span', 'age', ago(job.created));
    age.dataset.ago = String(job.created);
    facts.append(age);
    const actions = el('div', 'actions');
    const button = (action, key, cls) => {
      const b = el('button', cls || null, say(key));
      b.type = 'button';
      b.dataset.job = job.id;
      b.dataset.action = action;
      b.setAttribute('aria-describedby', t.id);
      actions.append(b);
    };
    if (kind === 'pending' && CAN_EDIT) {
      button('approve', job.at ? 'approve_scheduled' : 'approve_publish', 'primary');
      button('reject', 'reject', 'danger');
    } else if (kind === 'pending' && job.by === ME) {
      button('cancel', 'withdraw');
    } else if (kind === 'scheduled' && CAN_EDIT) {
      button('cancel', 'cancel');
    }
    li.append(line, facts, actions);
    return li;
  }

  function renderJobs(state) {
    [['pending', state.pending], ['scheduled', state.scheduled]].forEach(([kind, jobs]) => {
      const list = $(kind);
      const section = $(kind + '-section');
      section.hidden = jobs.length === 0;
      const sig = JSON.stringify(jobs);
      if (list.dataset.sig === sig) return;
      list.dataset.sig = sig;
      const focused = document.activeElement;
      const focusKey = focused && focused.dataset && focused.dataset.job
        ? focused.dataset.job + '/' + focused.dataset.action : null;
      list.replaceChildren(...jobs.map((j) => jobRow(j, kind)));
      if (focusKey && !document.body.contains(focused)) {
        const [job, action] = focusKey.split('/');
        const b = list.querySelector('[data-job="' + CSS.escape(job) + '"][data-action="' + action + '"]');
        if (b) b.focus();
      }
    });
  }

  function apply(state) {
    if (!state || !Array.isArray(state.channels)) return;
    if (Number.isFinite(state.now)) offset = state.now - Date.now();
    current = state;
    renderBoard(state);
    applyDefaults(state);
    showEdition(board.dataset.edition || '');
    renderJobs(state);
    body.dataset.ready = 'true';
  }

  async function refresh() {
    const res = await api('GET', '/desk/api/state');
    if (res.ok) apply(res.body);
  }

  function findItem(channelName, id) {
    if (!current) return null;
    const channel = current.channels.find((c) => c.name === channelName);
    const it = channel && channel.items.find((i) => i.id === id);
    return it ? { channel, item: it } : null;
  }

  // -- actions -------------------------------------------------------------------------------

  /** A refusal (`isError`: text) over the board, or what was done (text or nodes) under
   *  the compose form. */
  function announce(message, isError) {
    const err = $('board-error');
    if (isError) {
      err.textContent = message;
      err.hidden = false;
    } else {
      err.hidden = true;
      $('compose-status').replaceChildren(message);
    }
  }

  /** The string `key` about a line: its {text} set apart in a <bdi>, in its own direction
   *  (an English line in an Arabic sentence, or the other way round). */
  function aboutLine(key, values) {
    return nodes(key, Object.assign({}, values, { text: el('bdi', null, values.text) }));
  }

  async function act(channel, id, op, payload) {
    const res = await api('POST', '/desk/api/items/' + encodeURIComponent(channel) + '/' +
      encodeURIComponent(id) + '/' + op, payload || {});
    if (res.ok) {
      const found = findItem(channel, id);
      const done = OPS.includes(op) ? say('done_' + op) : op;
      announce(found ? aboutLine('done_on', { done, channel, text: found.item.text })
        : say('done_on_short', { done, channel }));
      refresh();
    }
    return res;
  }

  const dialogs = {};
  const busy = new WeakSet(); // buttons whose request is in flight
  /** Run `work` (a request) for button `b` once at a time; a refusal is announced. Not
   *  `disabled` meanwhile: a disabled button drops the keyboard focus. */
  async function busyWith(b, work) {
    if (busy.has(b)) return;
    busy.add(b);
    b.setAttribute('aria-busy', 'true');
    try {
      const res = await work();
      if (!res.ok) announce((res.body && res.body.message) || say('failed'), true);
    } finally {
      busy.delete(b);
      b.removeAttribute('aria-busy');
    }
  }
  function dialog(name, setup, submit) {
    const d = $(name + '-dialog');
    const f = $(name + '-form');
    let ctx = null;
    let opener = null;
    f.querySelector('button.cancel').addEventListener('click', () => d.close('cancel'));
    d.addEventListener('close', () => {
      if (opener && document.body.contains(opener)) opener.focus();
      else if (opener) focusAction(opener.dataset.channel, opener.dataset.id, opener.dataset.op);
      ctx = null;
    });
    const go = async (e) => {
      e.preventDefault();
      if (!ctx) return;
      clearErrors(f);
      const buttons = f.querySelectorAll('button');
      buttons.forEach((b) => { b.disabled = true; });
      try {
        if (await submit(ctx, f)) d.close('done');
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    };
    f.addEventListener('submit', go);
    f.addEventListener('keydown', (e) => { if (isSubmitChord(e)) go(e); });
    dialogs[name] = (value, from) => {
      ctx = value;
      opener = from || document.activeElement;
      if (opener && opener.dataset && opener.dataset.op) {
        // The row may be redrawn while the dialog is open: remember which button it was.
        const li = opener.closest('li.item');
        opener.dataset.channel = li.dataset.channel;
        opener.dataset.id = li.dataset.id;
      }
      clearErrors(f);
      setup(value, f);
      d.showModal();
    };
  }

  dialog('correct', (ctx) => {
    $('correct-text').value = ctx.item.text;
    $('correct-reason').value = '';
    updateCorrectCount();
    $('correct-text').focus();
  }, async (ctx) => {
    const value = $('correct-text').value;
    const n = textLength(value);
    if (!n) return !setError('correct-text-error', say('write_corrected'), $('correct-text'));
    if (n > MAX) return !setError('correct-text-error', tooLong(n), $('correct-text'));
    const payload = { text: value, version: ctx.item.version };
    const reason = $('correct-reason').value.trim();
    if (reason) payload.reason = reason;
    const res = await act(ctx.channel, ctx.item.id, 'correct', payload);
    if (!res.ok) {
      showServerError(res, { text: ['correct-text-error', $('correct-text')],
        reason: ['correct-reason-error', $('correct-reason')] }, 'correct-error');
    }
    return res.ok;
  });

  function updateCorrectCount() {
    const n = textLength($('correct-text').value);
    const c = $('correct-count');
    c.textContent = say('count', { n: number(n), max: number(MAX) });
    c.classList.toggle('over', n > MAX);
  }
  $('correct-text').addEventListener('input', updateCorrectCount);
  $('correct-text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey) e.preventDefault();
  });

  dialog('kill', (ctx) => {
    $('kill-item-text').textContent = ctx.item.text;
    $('kill-item-text').dir = 'auto';
    $('kill-reason').value = '';
    const others = otherVersions(ctx.channel, ctx.item);
    const all = [ctx.channel].concat(others.map(([name]) => name));
    $('kill-all-field').hidden = others.length === 0;
    $('kill-all').checked = true;
    $('kill-all-label').textContent = say('kill_in', { editions: listed(all) });
    const list = $('kill-versions');
    list.replaceChildren();
    others.forEach(([name, id]) => {
      const found = findItem(name, id);
      const li = el('li');
      li.append(el('b', null, name), ' ');
      const t = el('bdi', null, found ? found.item.text : id);
      const ch = channelByName(name);
      if (ch) { t.dir = ch.dir; t.lang = ch.lang; }
      li.append(t);
      list.append(li);
    });
    $('kill-reason').focus();
  }, async (ctx) => {
    const reason = $('kill-reason').value.trim();
    if (!reason) return !setError('kill-reason-error', say('kill_reason_needed'), $('kill-reason'));
    const payload = { reason };
    if (!$('kill-all-field').hidden && $('kill-all').checked) payload.all_versions = true;
    const res = await act(ctx.channel, ctx.item.id, 'kill', payload);
    if (!res.ok) showServerError(res, { reason: ['kill-reason-error', $('kill-reason')] }, 'kill-error');
    return res.ok;
  });

  // Translate: ctx = {channel, item} of the original (an on-air line or a queue entry) and
  // optionally the edition to translate into.
  dialog('translate', (ctx) => {
    const from = channelByName(ctx.channel) || { dir: 'auto', lang: '', name: ctx.channel };
    // A line that is itself a translation is translated from its story's original.
    let original = { channel: ctx.channel, id: ctx.item.id, item: ctx.item };
    if (ctx.item.story && ctx.item.story !== ctx.channel + ':' + ctx.item.id) {
      const [oc, oid] = [ctx.item.story.slice(0, ctx.item.story.indexOf(':')),
        ctx.item.story.slice(ctx.item.story.indexOf(':') + 1)];
      const found = findItem(oc, oid);
      original = { channel: oc, id: oid, item: found ? found.item : ctx.item };
    }
    ctx.original = original;
    const oChan = channelByName(original.channel) || from;
    $('translate-original-label').textContent = say('original_from', { edition: original.channel });
    const o = $('translate-original');
    o.textContent = original.item.text;
    o.dir = oChan.dir;
    o.lang = oChan.lang;
    $('translate-original-facts').textContent = [urgencyLabel(original.item.urgency),
      original.item.source ? say('source_fact', { source: original.item.source }) : '']
      .filter(Boolean).join(' · ');
    const select = $('translate-edition');
    select.replaceChildren();
    const missing = missingEditions(original.item.versions ? original.item : { versions: { [original.channel]: original.id } });
    missing.forEach((c) => {
      const opt = el('option', null, c.name + ' (' + c.title + ')');
      opt.value = c.name;
      select.append(opt);
    });
    if (ctx.edition) select.value = ctx.edition;
    $('translate-text').value = '';
    $('translate-source').value = '';
    setTranslateDirection();
    updateTranslateCount();
    $('translate-text').focus();
  }, async (ctx) => {
    const edition = $('translate-edition').value;
    if (!edition) return !setError('translate-edition-error', say('no_edition_left'), $('translate-edition'));
    const value = $('translate-text').value;
    const n = textLength(value);
    if (!n) return !setError('translate-text-error', say('write_translation'), $('translate-text'));
    if (n > MAX) return !setError('translate-text-error', tooLong(n), $('translate-text'));
    const o = ctx.original;
    const payload = { text: value, channels: [edition], urgency: o.item.urgency,
      translation_of: { channel: o.channel, id: o.id }, idem: newIdem() };
    const source = $('translate-source').value.trim();
    if (source) payload.source = source;
    if (o.item.link) payload.link = o.item.link;
    const res = await api('POST', '/desk/api/items', payload);
    if (!res.ok) {
      showServerError(res, { text: ['translate-text-error', $('translate-text')],
        source: ['translate-source-error', $('translate-source')],
        channels: ['translate-edition-error', $('translate-edition')],
        translation_of: ['translate-edition-error', $('translate-edition')] }, 'translate-error');
      return false;
    }
    announce(aboutLine(res.status === 202 ? 'sent_in' : 'published_in', { edition, text: value.trim() }));
    refresh();
    return true;
  });

  function setTranslateDirection() {
    const ch = channelByName($('translate-edition').value);
    ['translate-text', 'translate-source'].forEach((id) => {
      $(id).dir = ch ? ch.dir : 'auto';
      $(id).lang = ch ? ch.lang : '';
    });
  }
  function updateTranslateCount() {
    const n = textLength($('translate-text').value);
    const c = $('translate-count');
    c.textContent = say('count', { n: number(n), max: number(MAX) });
    c.classList.toggle('over', n > MAX);
  }
  $('translate-edition').addEventListener('change', setTranslateDirection);
  $('translate-text').addEventListener('input', updateTranslateCount);
  $('translate-text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey) e.preventDefault();
  });

  dialog('extend', (ctx) => {
    $('extend-now').textContent = say('extend_now', { until: until(ctx.item.expires) });
    $('extend-ttl').focus();
  }, async (ctx) => {
    const res = await act(ctx.channel, ctx.item.id, 'extend', { ttl: Number($('extend-ttl').value) });
    if (!res.ok) showServerError(res, {}, 'extend-error');
    return res.ok;
  });

  dialog('reject', (ctx) => {
    $('reject-item-text').textContent = ctx.job.text;
    $('reject-reason').value = '';
    $('reject-reason').focus();
  }, async (ctx) => {
    const reason = $('reject-reason').value.trim();
    const res = await api('POST', '/desk/api/jobs/' + encodeURIComponent(ctx.job.id) + '/reject',
      reason ? { reason } : {});
    if (!res.ok) {
      showServerError(res, { reason: ['reject-reason-error', $('reject-reason')] }, 'reject-error');
    } else {
      announce(aboutLine('rejected', { text: ctx.job.text }));
      refresh();
    }
    return res.ok;
  });

  board.addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-op]');
    if (!b) return;
    const li = b.closest('li.item');
    const found = findItem(li.dataset.channel, li.dataset.id);
    if (!found) return;
    const ctx = { channel: found.channel.name, item: found.item };
    const op = b.dataset.op;
    if (dialogs[op]) {
      dialogs[op](ctx, b);
      return;
    }
    await busyWith(b, () => act(ctx.channel, ctx.item.id, op));
  });

  document.querySelector('.board').addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-job]');
    if (!b || !current) return;
    const job = current.pending.concat(current.scheduled).find((j) => j.id === b.dataset.job);
    if (!job) return;
    if (b.dataset.action === 'reject') {
      dialogs.reject({ job }, b);
      return;
    }
    await busyWith(b, async () => {
      const res = await api('POST', '/desk/api/jobs/' + encodeURIComponent(job.id) + '/' + b.dataset.action);
      if (res.ok) {
        const done = { approve: 'approved', cancel: job.kind === 'pending' ? 'withdrawn' : 'cancelled' };
        announce(aboutLine(done[b.dataset.action], { text: job.text }));
        refresh();
      }
      return res;
    });
  });

  // -- the live feed -------------------------------------------------------------------------

  const liveStatus = $('live-status');
  let staleTimer = 0;
  function setLive(s) {
    clearTimeout(staleTimer);
    const show = (state) => {
      liveStatus.dataset.state = state;
      liveStatus.textContent = say(state);
    };
    if (s === 'live' || s === 'stale') show(s);
    else staleTimer = setTimeout(() => show('reconnecting'), 3000);
  }

  let feed = null;
  function connect() {
    if (!window.EventSource) {
      setInterval(refresh, 3000); // old browsers: poll
      return;
    }
    feed = new EventSource('/desk/api/events');
    feed.addEventListener('state', (e) => {
      setLive('live');
      try {
        apply(JSON.parse(e.data));
      } catch (err) {
        console.warn('[desk] bad state', err);
      }
    });
    feed.addEventListener('stale', () => setLive('stale'));
    feed.addEventListener('ended', () => {
      feed.close();
      signedOut();
    });
    feed.addEventListener('error', () => {
      setLive('reconnecting');
      if (feed.readyState === EventSource.CLOSED) {
        // An HTTP error (401 when the session ended): find out, and try again later.
        feed.close();
        setTimeout(async () => {
          const res = await api('GET', '/desk/api/state');
          if (res.status !== 401) {
            if (res.ok) apply(res.body);
            connect();
          }
        }, 2000);
      }
    });
  }

  // -- start ---------------------------------------------------------------------------------

  updateCount();
  updateTtlHint();
  updatePreview();
  refresh().then(connect);
  setInterval(tick, 1000);
})();
