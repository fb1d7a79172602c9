/*!
 * people.js: the desk's people (/desk/people), API tokens (/desk/tokens) and settings
 * (/desk/settings) pages. No framework, no build, no inline script (CSP script-src 'self').
 *
 * The server renders each page (Jinja2, ticker.desk.pages); this script sends its forms to
 * the JSON endpoints (ticker.desk.admin) with the session's CSRF token, puts each error next
 * to the field it names, and updates what changed in place. Every visible string comes from
 * the page's table (ticker.desk.texts, in the user's language) through i18n.js
 * (TickerText); user names, edition names and tokens only ever go in as text (textContent,
 * value), never as HTML.
 */
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const CSRF = (document.querySelector('meta[name="ticker-csrf"]') || {}).content || '';
  const ME = body.dataset.user || '';
  const { say } = window.TickerText;
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

  /** The scopes an error or a status may go to: the form, then its user's card if any. */
  function scopes(scope) {
    const card = scope.closest('.person');
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

  function showStatus(scope, text) {
    const place = scopes(scope).find((p) => p.querySelector('[data-cell="status"]'));
    if (place) place.querySelector('[data-cell="status"]').textContent = text;
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

  /** Ask first; resolves to true if the person confirmed. `kind` picks the strings. */
  function confirmed(kind, name) {
    const dialog = $('confirm-dialog');
    $('confirm-title').textContent = say('confirm_' + kind + '_title', { name });
    $('confirm-text').textContent = say('confirm_' + kind + '_text', { name });
    $('confirm-yes').textContent = say('confirm_' + kind + '_button', { name });
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
      if (asks(kind) && !(await confirmed(kind, card.dataset.name))) return;
      const done = await changePerson(card, card, action, undefined, button);
      if (done && button.hidden) {
        const twin = card.querySelector('[data-action="' + (action === 'disable' ? 'enable'
          : 'disable') + '"]');
        if (twin) twin.focus();
      }
    });
  }

  // -- tokens --------------------------------------------------------------------------------

  function tokens() {
    const form = $('create-token');
    const rows = $('tokens').tBodies[0];
    const once = $('token-once');
    const value = $('token-value');
    const section = rows.closest('section');

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const answer = await submit(form, '/desk/api/tokens', values(form));
      if (!answer) return;
      const name = answer.name;
      const row = $('token-template').content.firstElementChild.cloneNode(true);
      row.dataset.name = name;
      row.querySelector('.name').textContent = name;
      setTime(row.querySelector('time'), Date.now());
      insertByName(rows, row);
      $('no-tokens').hidden = true;
      form.reset();
      showStatus(form, say('created_status', { name }));
      $('once-title').textContent = say('once_title', { name });
      value.value = answer.token;
      $('token-copied').textContent = '';
      once.hidden = false;
      value.focus();
      value.select();
    });

    $('token-copy').addEventListener('click', async () => {
      let copied = false;
      try {
        await navigator.clipboard.writeText(value.value);
        copied = true;
      } catch (e) {
        value.focus();
        value.select();
        copied = document.execCommand && document.execCommand('copy');
      }
      $('token-copied').textContent = say(copied ? 'copied' : 'copy_failed');
    });

    $('token-done').addEventListener('click', () => {
      value.value = ''; // the token leaves the page: it is never shown again
      once.hidden = true;
      form.querySelector('[name="name"]').focus();
    });

    rows.addEventListener('click', async (event) => {
      const button = event.target.closest('button[data-action="revoke"]');
      if (!button) return;
      const row = button.closest('tr');
      const name = row.dataset.name;
      if (!(await confirmed('revoke', name))) return;
      const answer = await submit(
        section, '/desk/api/tokens/' + encodeURIComponent(name) + '/revoke', undefined, button);
      if (!answer) return;
      row.remove();
      $('no-tokens').hidden = rows.children.length > 0;
      showStatus(section, say('revoked', { name }));
      form.querySelector('[name="name"]').focus();
    });
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
  else if (body.classList.contains('settings-page')) settings();
  body.dataset.ready = 'true';
})();
