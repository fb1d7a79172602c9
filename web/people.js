/*!
 * people.js: the desk's people (/desk/people), API tokens (/desk/tokens), webhooks
 * (/desk/webhooks) and settings (/desk/settings) pages. No framework, no build, no inline
 * script (CSP script-src 'self').
 *
 * The server renders each page (Jinja2, ticker.desk.pages); this script sends its forms to
 * the JSON endpoints (ticker.desk.admin, ticker.desk.webhooks) with the session's CSRF token,
 * puts each error next to the field it names, and updates what changed in place; the
 * webhooks page also asks how delivery goes every few seconds while it is open. Every
 * visible string comes from the page's table (ticker.desk.texts, in the user's language)
 * through i18n.js (TickerText); user names, edition names, tokens, secrets, URLs, errors and
 * item text only ever go in as text (textContent, value), never as HTML, URLs and ids in
 * their own left-to-right run.
 */
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const CSRF = (document.querySelector('meta[name="ticker-csrf"]') || {}).content || '';
  const ME = body.dataset.user || '';
  const { say, nodes, number, relative, list: listOf } = window.TickerText;
  /** Whether the page asks before doing `kind` (it has the strings for the question). */
  const asks = (kind) => say('confirm_' + kind + '_title') !== 'confirm_' + kind + '_title';

  // -- HTTP ----------------------------------------------------------------------------------

  function signedOut() {
    window.location.assign('/login?next=' + window.location.pathname);
  }

  /** POST (or GET) JSON; resolves to {ok, status, body}, never throws. */
  async function send(method, url, payload) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin' };
    if (method !== 'GET') headers['X-CSRF-Token'] = CSRF;
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      return { ok: false, status: 0, body: {} };
    }
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) signedOut();
    return { ok: response.ok, status: response.status, body: data || {} };
  }

  // -- messages and errors -------------------------------------------------------------------

  function put(box, text) {
    if (!box) return;
    box.textContent = text || '';
    box.hidden = !text;
  }

  /** The scopes an error or a status may go to: the form, then its card (a user, a webhook). */
  function scopes(scope) {
    const card = scope.closest('.person, .hook');
    return card && card !== scope ? [scope, card] : [scope];
  }

  function clearErrors(scope) {
    scopes(scope).forEach((place) => {
      place.querySelectorAll('.error, .form-error').forEach((box) => put(box, ''));
      place.querySelectorAll('[aria-invalid]').forEach((i) => i.removeAttribute('aria-invalid'));
    });
  }

  /** The server's message next to the field it names (in `scope` or its card), else on top. */
  function showError(scope, res) {
    const answer = res.body || {};
    const message = answer.message
      || (res.status ? say('server_said', { status: res.status }) : say('no_connection'));
    const field = typeof answer.field === 'string' ? CSS.escape(answer.field) : '';
    for (const place of scopes(scope)) {
      const box = field && place.querySelector('[data-error-for="' + field + '"]');
      if (box) {
        put(box, message);
        const input = place.querySelector('[name="' + field + '"]');
        if (input) {
          input.setAttribute('aria-invalid', 'true');
          input.focus();
        }
        return;
      }
    }
    put(scope.querySelector('[data-error-for="form"]'), message);
  }

  /** `text` (a string or nodes from TickerText.nodes) as the status of `scope` or its card. */
  function showStatus(scope, text) {
    const place = scopes(scope).find((p) => p.querySelector('[data-cell="status"]'));
    if (!place) return;
    const box = place.querySelector('[data-cell="status"]');
    if (text) box.replaceChildren(text);
    else box.replaceChildren();
  }

  /** `text` in its own run in a sentence of any direction: in `dir`, or its own (auto). */
  function run(text, dir) {
    const node = document.createElement('bdi');
    if (dir) node.dir = dir;
    node.textContent = text;
    return node;
  }

  /** A URL or an id in a sentence: left to right. */
  const ltr = (text) => run(text, 'ltr');

  /** Placeholder values for TickerText.nodes, a `url` among them as its own run (made anew at
   *  each call: a node goes in one place only). */
  function isolate(values) {
    return Object.assign({}, values, values.url === undefined ? {} : { url: ltr(values.url) });
  }

  /** Run `work` with `button` disabled (one request at a time per control). */
  async function busy(button, work) {
    if (button) button.disabled = true;
    try {
      return await work();
    } finally {
      if (button) button.disabled = false;
    }
  }

  /**
   * POST `payload` for `scope` (a form or a card) with `button` held down; the answer's body,
   * or null once the refusal is shown next to its field.
   */
  async function submit(scope, url, payload, button) {
    clearErrors(scope);
    showStatus(scope, '');
    const res = await busy(button || scope.querySelector('button[type="submit"]'),
      () => send('POST', url, payload));
    if (res.ok) return res.body;
    showError(scope, res);
    return null;
  }

  /** A form's fields: text and selects as strings, check boxes as the list of ticked values. */
  function values(form) {
    const out = {};
    Array.from(form.elements).forEach((input) => {
      if (!input.name) return;
      if (input.type === 'checkbox') {
        out[input.name] = out[input.name] || [];
        if (input.checked) out[input.name].push(input.value);
      } else {
        out[input.name] = input.value;
      }
    });
    return out;
  }

  function tick(scope, chosen) {
    scope.querySelectorAll('input[name="editions"]').forEach((box) => {
      box.checked = chosen.includes(box.value);
    });
  }

  /** Ask first; resolves to true if the person confirmed. `kind` picks the strings, `values`
   *  fills them in ({name} or {url}). */
  function confirmed(kind, values) {
    const dialog = $('confirm-dialog');
    ['title', 'text', 'button'].forEach((part) => {
      $(part === 'button' ? 'confirm-yes' : 'confirm-' + part).replaceChildren(
        nodes('confirm_' + kind + '_' + part, isolate(values)));
    });
    dialog.returnValue = '';
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'),
        { once: true });
      dialog.showModal();
    });
  }

  /** Epoch ms into a <time>, in UTC as the page says, written in the page's language. */
  function setTime(time, ms) {
    time.dateTime = new Date(ms).toISOString();
    time.textContent = window.TickerText.utc(ms);
  }

  /** Insert `node` into `list` keeping the children in order of their data-name. */
  function insertByName(list, node) {
    const after = Array.from(list.children).find((n) => n.dataset.name > node.dataset.name);
    list.insertBefore(node, after || null);
  }

  // -- people --------------------------------------------------------------------------------

  function fillPerson(card, user) {
    const cell = (name) => card.querySelector('[data-cell="' + name + '"]');
    card.dataset.name = user.name;
    card.dataset.disabled = String(user.disabled);
    card.querySelector('.person-name').textContent = user.name;
    cell('state').textContent = say(user.disabled ? 'disabled' : 'active');
    cell('role').textContent = say('role_' + user.role);
    cell('lang').textContent = say('lang_' + user.lang);
    cell('editions').textContent = user.editions.length ? user.editions.join(', ')
      : say('all_editions');
    setTime(cell('created'), user.created);
    setTime(cell('updated'), user.updated);
    card.querySelector('select[name="role"]').value = user.role;
    card.querySelector('select[name="lang"]').value = user.lang;
    tick(card, user.editions);
    card.querySelector('[data-action="disable"]').hidden = user.disabled;
    card.querySelector('[data-action="enable"]').hidden = !user.disabled;
  }

  // What each per-user form sends.
  const PERSON_BODIES = {
    role: (v) => ({ role: v.role }),
    lang: (v) => ({ lang: v.lang }),
    editions: (v) => ({ editions: v.editions || [] }),
    passwd: (v) => ({ password: v.password }),
  };

  async function changePerson(card, scope, action, payload, button) {
    const name = card.dataset.name;
    const answer = await submit(
      scope, '/desk/api/users/' + encodeURIComponent(name) + '/' + action, payload, button);
    if (!answer) return false;
    const user = answer.user;
    fillPerson(card, user);
    showStatus(card, say('done_' + action.replace('-', '_'), {
      name: user.name, role: say('role_' + user.role), lang: say('lang_' + user.lang) }));
    // Ending one's own sessions (or one's own password) signs this page out too.
    if (name === ME && (action === 'end-sessions' || action === 'passwd')) signedOut();
    return true;
  }

  function people() {
    const list = $('people');
    const add = $('add-user');

    add.addEventListener('submit', async (event) => {
      event.preventDefault();
      const answer = await submit(add, '/desk/api/users', values(add));
      if (!answer) return;
      const card = $('person-template').content.firstElementChild.cloneNode(true);
      fillPerson(card, answer.user);
      insertByName(list, card);
      $('no-people').hidden = true;
      add.reset();
      showStatus(add, say('added', { name: answer.user.name }));
      add.querySelector('[name="name"]').focus();
    });

    list.addEventListener('submit', async (event) => {
      const form = event.target.closest('form[data-action]');
      if (!form) return;
      event.preventDefault();
      const action = form.dataset.action;
      const done = await changePerson(form.closest('.person'), form, action,
        PERSON_BODIES[action](values(form)), form.querySelector('button[type="submit"]'));
      if (done && action === 'passwd') form.reset();
    });

    list.addEventListener('click', async (event) => {
      const button = event.target.closest('button[data-action]');
      if (!button) return;
      const card = button.closest('.person');
      const action = button.dataset.action;
      const kind = action.replace('-', '_');
      if (asks(kind) && !(await confirmed(kind, { name: card.dataset.name }))) return;
      const done = await changePerson(card, card, action, undefined, button);
      if (done && button.hidden) {
        const twin = card.querySelector('[data-action="' + (action === 'disable' ? 'enable'
          : 'disable') + '"]');
        if (twin) twin.focus();
      }
    });
  }

  // -- shown once ----------------------------------------------------------------------------

  /**
   * The box `{prefix}-once` (desk-parts.html once_box: a new token, a webhook's secret) with
   * its Copy and "I have copied it" buttons; returns show(title, value). The value leaves the
   * page when it is done, and then `done` runs.
   */
  function onceBox(prefix, done) {
    const box = $(prefix + '-once');
    const value = $(prefix + '-value');
    const note = $(prefix + '-copied');

    $(prefix + '-copy').addEventListener('click', async () => {
      let copied = false;
      try {
        await navigator.clipboard.writeText(value.value);
        copied = true;
      } catch (e) {
        value.focus();
        value.select();
        copied = document.execCommand && document.execCommand('copy');
      }
      note.textContent = say(copied ? 'copied' : 'copy_failed');
    });

    $(prefix + '-done').addEventListener('click', () => {
      value.value = ''; // it is never shown again
      box.hidden = true;
      done();
    });

    return (title, secret) => {
      box.querySelector('h2').replaceChildren(title);
      value.value = secret;
      note.textContent = '';
      box.hidden = false;
      value.focus();
      value.select();
    };
  }

  // -- tokens --------------------------------------------------------------------------------

  function tokens() {
    const form = $('create-token');
    const rows = $('tokens').tBodies[0];
    const section = rows.closest('section');
    const show = onceBox('token', () => form.querySelector('[name="name"]').focus());

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const v = values(form);
      const answer = await submit(form, '/desk/api/tokens',
        { name: v.name, admin: (v.admin || []).length > 0 });
      if (!answer) return;
      const name = answer.name;
      const row = $('token-template').content.firstElementChild.cloneNode(true);
      row.dataset.name = name;
      row.querySelector('.name').textContent = name;
      setTime(row.querySelector('time'), Date.now());
      const kind = row.querySelector('.kind');
      kind.dataset.admin = String(answer.admin);
      kind.textContent = say(answer.admin ? 'kind_admin' : 'kind_publish');
      insertByName(rows, row);
      $('no-tokens').hidden = true;
      form.reset();
      showStatus(form, say(answer.admin ? 'created_admin_status' : 'created_status', { name }));
      show(say('once_title', { name }), answer.token);
    });

    rows.addEventListener('click', async (event) => {
      const button = event.target.closest('button[data-action="revoke"]');
      if (!button) return;
      const row = button.closest('tr');
      const name = row.dataset.name;
      if (!(await confirmed('revoke', { name }))) return;
      const answer = await submit(
        section, '/desk/api/tokens/' + encodeURIComponent(name) + '/revoke', undefined, button);
      if (!answer) return;
      row.remove();
      $('no-tokens').hidden = rows.children.length > 0;
      showStatus(section, say('revoked', { name }));
      form.querySelector('[name="name"]').focus();
    });
  }

  // -- webhooks ------------------------------------------------------------------------------

  const REFRESH_MS = 3000; // how often an open webhooks page asks how delivery goes

  const stateOf = (d) => (d.retrying ? 'retrying' : (d.waiting ? 'sending' : 'idle'));

  /** The names of `chosen` as the page says them (`prefix` + name), or "All" for none. */
  const named = (chosen, prefix) => (chosen.length ? listOf(chosen.map((v) => say(prefix + v)))
    : say('all'));

  /** A sentence about delivery, or none (the paragraph hides). */
  function sentence(box, content) {
    if (content) box.replaceChildren(content);
    else box.replaceChildren();
    box.hidden = !content;
  }

  /** Write `hook` (GET /desk/api/webhooks' shape) into its card; `now` is the server's time. */
  function fillHook(card, hook, now) {
    const cell = (name) => card.querySelector('[data-cell="' + name + '"]');
    const d = hook.delivery;
    const state = stateOf(d);
    card.dataset.id = hook.id;
    card.dataset.state = state;
    card.dataset.dead = String(d.dead);
    cell('url').textContent = hook.url;
    cell('state').textContent = say('state_' + state);
    cell('id').textContent = hook.id;
    cell('channels').textContent = listOf(hook.channels);
    cell('urgencies').textContent = named(hook.urgencies, 'urgency_');
    cell('ops').textContent = named(hook.ops, 'op_');
    setTime(cell('created'), hook.created);
    cell('by').textContent = hook.by;
    cell('sent').textContent = number(d.sent);
    cell('waiting').textContent = number(d.waiting);
    cell('dead').textContent = number(d.dead);
    cell('failed').textContent = number(d.failed_attempts);
    sentence(cell('retrying'), d.retrying && nodes('retrying', {
      n: number(d.attempts), error: run(d.last_error || ''),
      when: relative(Math.max(0, (d.next_try || now) - now)) }));
    sentence(cell('oldest'), d.waiting > 0 && d.oldest_queued
      && say('oldest', { when: relative(Math.min(0, d.oldest_queued - now)) }));
    sentence(cell('last-error'), !d.retrying && d.last_error
      && nodes('last_error', { error: run(d.last_error) }));
  }

  /** One dead letter (GET /desk/api/webhooks/{id}/dead's shape) as a list item. */
  function deadLetter(letter) {
    const item = $('dead-template').content.firstElementChild.cloneNode(true);
    const cell = (name) => item.querySelector('[data-cell="' + name + '"]');
    item.dataset.id = letter.id;
    setTime(cell('gave-up'), letter.gave_up);
    cell('type').textContent = letter.type || '?';
    cell('channel').textContent = letter.channel;
    cell('http-status').textContent = letter.status ? String(letter.status) : say('no_answer');
    cell('attempts').textContent = number(letter.attempts);
    cell('error').textContent = letter.error;
    const shown = cell('item');
    shown.textContent = letter.text || letter.item || '';
    if (!letter.text) shown.dir = 'ltr'; // an item's id
    cell('item-row').hidden = !shown.textContent;
    return item;
  }

  function webhooks() {
    const list = $('webhooks');
    const add = $('add-webhook');
    const section = list.closest('section');
    const urlField = add.querySelector('[name="url"]');
    const show = onceBox('secret', () => urlField.focus());
    const path = (card, rest) => '/desk/api/webhooks/' + encodeURIComponent(card.dataset.id)
      + (rest || '');
    const cardOf = (id) => Array.from(list.children).find((card) => card.dataset.id === id);

    /** The card of `hook`, made from the blank one if the page has none yet. */
    function cardFor(hook) {
      let card = cardOf(hook.id);
      if (!card) {
        card = $('hook-template').content.firstElementChild.cloneNode(true);
        card.dataset.id = hook.id;
        list.append(card);
        $('no-webhooks').hidden = true;
      }
      return card;
    }

    /** Load the card's dead letters into its list, keeping the focus on the same one. */
    async function loadDead(card) {
      const letters = card.querySelector('.dead-letters');
      const note = card.querySelector('[data-cell="dead-note"]');
      if (!letters.children.length) note.textContent = say('loading');
      card.dataset.deadShown = card.dataset.dead;
      const res = await send('GET', path(card, '/dead'));
      if (!res.ok) {
        note.textContent = '';
        showError(card, res);
        return;
      }
      const focused = letters.contains(document.activeElement)
        ? document.activeElement.closest('.dead-letter').dataset.id : null;
      letters.replaceChildren(...res.body.dead.map(deadLetter));
      note.textContent = res.body.dead.length ? '' : say('no_dead');
      const again = focused && Array.from(letters.children).find((l) => l.dataset.id === focused);
      if (again) again.querySelector('button').focus();
    }

    let refreshing = false;
    /** Every subscription's delivery as the server has it now (another admin's changes too);
     *  an open list of dead letters is loaded again when more were given up. */
    async function refresh() {
      if (refreshing) return;
      refreshing = true;
      try {
        const res = await send('GET', '/desk/api/webhooks');
        if (!res.ok) return; // the next round tries again (a 401 went to sign in)
        const now = res.body.now;
        const seen = new Set(res.body.webhooks.map((hook) => hook.id));
        Array.from(list.children).filter((card) => !seen.has(card.dataset.id))
          .forEach((card) => card.remove());
        res.body.webhooks.forEach((hook) => {
          const card = cardFor(hook);
          fillHook(card, hook, now);
          if (card.querySelector('details').open && card.dataset.deadShown !== card.dataset.dead) {
            loadDead(card);
          }
        });
        $('no-webhooks').hidden = list.children.length > 0;
      } finally {
        refreshing = false;
      }
    }

    add.addEventListener('submit', async (event) => {
      event.preventDefault();
      const v = values(add);
      if (!v.channels.length) { // said here, in the page's language
        clearErrors(add);
        showError(add, { status: 422,
          body: { message: say('choose_channel'), field: 'channels' } });
        return;
      }
      const answer = await submit(add, '/desk/api/webhooks',
        { url: v.url, channels: v.channels, urgencies: v.urgencies, ops: v.ops });
      if (!answer) return;
      const hook = answer.webhook;
      fillHook(cardFor(hook), hook, Date.now());
      add.reset();
      showStatus(add, nodes('added', isolate({ url: hook.url })));
      show(nodes('once_title', isolate({ url: hook.url })), answer.secret);
    });

    list.addEventListener('toggle', (event) => {
      const details = event.target;
      if (details.matches && details.matches('details.hook-dead') && details.open) {
        loadDead(details.closest('.hook'));
      }
    }, true); // toggle does not bubble

    list.addEventListener('click', async (event) => {
      const button = event.target.closest('button[data-action]');
      if (!button) return;
      const card = button.closest('.hook');
      const url = card.querySelector('[data-cell="url"]').textContent;
      const action = button.dataset.action;
      if (action === 'test') {
        if (!(await submit(card, path(card, '/test'), undefined, button))) return;
        showStatus(card, nodes('test_queued', isolate({ url })));
      } else if (action === 'remove') {
        if (!(await confirmed('remove', { url }))) return;
        if (!(await submit(card, path(card, '/remove'), undefined, button))) return;
        card.remove();
        $('no-webhooks').hidden = list.children.length > 0;
        showStatus(section, nodes('removed', isolate({ url })));
        urlField.focus();
      } else if (action === 'retry') {
        const letter = button.closest('.dead-letter');
        const done = await submit(letter, path(card, '/dead/'
          + encodeURIComponent(letter.dataset.id) + '/retry'), undefined, button);
        if (!done) return;
        card.querySelector('summary').focus();
        letter.remove();
        showStatus(card, say('retried'));
        if (!card.querySelector('.dead-letter')) {
          card.querySelector('[data-cell="dead-note"]').textContent = say('no_dead');
        }
      }
      refresh();
    });

    refresh();
    window.setInterval(() => {
      if (!document.hidden) refresh();
    }, REFRESH_MS);
  }

  // -- one's own settings --------------------------------------------------------------------

  function settings() {
    const form = $('prefs');
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const v = values(form);
      const answer = await submit(form, '/desk/api/me',
        { lang: v.lang, editions: v.editions || [] });
      if (!answer) return;
      form.querySelector('[name="lang"]').value = answer.user.lang;
      tick(form, answer.user.editions);
      showStatus(form, say('saved'));
    });
  }

  if (body.classList.contains('people-page')) people();
  else if (body.classList.contains('tokens-page')) tokens();
  else if (body.classList.contains('webhooks-page')) webhooks();
  else if (body.classList.contains('settings-page')) settings();
  body.dataset.ready = 'true';
})();
