/*
 * The demo page's edition switcher (En / Ar / Es ...): moves the ticker to another edition
 * without reloading the page. Each edition is a link to `/?edition=NAME`, which the server
 * renders with that edition's ticker, so the switcher works without script too; with it,
 * a click sets the element's `channel` attribute (the element reconnects to that channel),
 * the slot's language and direction (right to left for Arabic), and the address bar.
 */
(function () {
  'use strict';

  function choose(link) {
    var ticker = document.querySelector('breaking-ticker');
    var slot = ticker && ticker.closest('.ticker-slot');
    if (!ticker || !slot) return false;
    slot.setAttribute('lang', link.dataset.lang);
    slot.setAttribute('dir', link.dataset.dir);
    ticker.setAttribute('channel', link.dataset.edition);
    document.querySelectorAll('.editions a[data-edition]').forEach(function (other) {
      if (other === link) other.setAttribute('aria-current', 'true');
      else other.removeAttribute('aria-current');
    });
    var url = new URL(window.location.href);
    url.searchParams.set('edition', link.dataset.edition);
    window.history.replaceState(null, '', url);
    return true;
  }

  document.addEventListener('click', function (event) {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
        event.shiftKey || event.altKey) return;  // a new tab or window: let the link open
    var link = event.target.closest && event.target.closest('.editions a[data-edition]');
    if (link && choose(link)) event.preventDefault();
  });
})();
