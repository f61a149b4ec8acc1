// The outcomes dashboard while a recompute is pending: ask the status document every 2 seconds and
// reload once the latest snapshot is another one (new computed_at or data_version) or the work is
// over (a failed recompute ends the updating state too, and the page should stop saying it).
(function () {
  "use strict";
  const root = document.getElementById("outcomes");
  if (!root || root.dataset.updating !== "true") return;
  const url = root.dataset.statusUrl;
  const shownAt = root.dataset.computedAt || null;
  const shownVersion = root.dataset.dataVersion ? Number(root.dataset.dataVersion) : null;
  const INTERVAL_MS = 2000;

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.redirected) return; // sent to the login page: the session is over
      const type = response.headers.get("Content-Type") || "";
      if (response.ok && type.startsWith("application/json")) {
        const status = await response.json();
        if (status.computed_at !== shownAt || status.data_version !== shownVersion || !status.updating) {
          window.location.reload();
          return;
        }
      } else if (!response.ok && response.status < 500) {
        return; // signed out or no longer allowed: the next navigation will say so
      }
    } catch (error) {
      // a network blip: try again at the next tick
    }
    window.setTimeout(poll, INTERVAL_MS);
  }

  window.setTimeout(poll, INTERVAL_MS);
})();
