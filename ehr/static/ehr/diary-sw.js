// The diary's service worker: the diary page and its scripts open without a link.
// Network first (a fresh page whenever the link is up), the last good copy otherwise.
// Served by /diary/sw.js, which fills in the list below; nothing else is touched.
const CACHE = "telemed-diary-v1";
const PRECACHE = __PRECACHE__;

self.addEventListener("install", (event) => {
  // The page itself is cached on its first successful visit, never a log-in redirect.
  const assets = PRECACHE.filter((url) => !url.startsWith("/diary/"));
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(assets))
      .catch(() => {})
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || !PRECACHE.includes(url.pathname)) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok && !response.redirected) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
        }
        return response;
      })
      .catch(() => caches.match(url.pathname).then((hit) => hit || Response.error())),
  );
});
