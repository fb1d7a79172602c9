/*!
 * ticker-sw.js: the service worker of <breaking-ticker>'s "Notify me of flash news" (Web Push).
 * It must be served from the page's own origin (GET /ticker-sw.js on the ticker server, or a
 * copy on an embedding site: docs/push.md). It only shows what the ticker pushes:
 *
 *   {type: "flash" | "withdrawn", title, body, tag, url, lang, dir, id, edition}
 *
 * Each item's notification has the item's tag, so its withdrawal (a kill) replaces it.
 * A click opens the item's link, or the page the reader subscribed on. Text is text: a
 * notification cannot hold HTML.
 */
'use strict';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

function safeUrl(value) {
  try {
    const url = new URL(String(value || ''), self.location.origin);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : '';
  } catch (e) {
    return '';
  }
}

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (e) {
    data = {};
  }
  if (data === null || typeof data !== 'object') data = {};
  const title = typeof data.title === 'string' && data.title ? data.title : 'Breaking';
  const tag = typeof data.tag === 'string' ? data.tag : '';
  const options = {
    body: typeof data.body === 'string' ? data.body : '',
    dir: data.dir === 'rtl' ? 'rtl' : 'ltr',
    lang: typeof data.lang === 'string' ? data.lang : '',
    data: { url: safeUrl(data.url), id: String(data.id || ''), type: String(data.type || '') },
    // A flash alerts again even over an older one; a withdrawal quietly replaces it.
    renotify: Boolean(tag) && data.type === 'flash',
    silent: data.type === 'withdrawn',
  };
  if (tag) options.tag = tag;
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = event.notification.data && event.notification.data.url;
  if (url) event.waitUntil(self.clients.openWindow(url));
});
