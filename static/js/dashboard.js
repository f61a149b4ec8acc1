// The outcomes dashboard stays current by itself. While a recompute is pending it asks the status
// document every 2 seconds and reloads once the latest snapshot is another one (new computed_at or
// data_version) or the work is over (a failed recompute ends the updating state too). While the
// outcomes are current it asks every 5 seconds, and reloads when someone's save starts a recompute
// (the page then shows the updating state) or a new snapshot has appeared.
(function () {
  "use strict";
  const root = document.getElementById("outcomes");
  if (!root) return;
  const url = root.dataset.statusUrl;
  const updating = root.dataset.updating === "true";
  const shownAt = root.dataset.computedAt || null;
  const shownVersion = root.dataset.dataVersion ? Number(root.dataset.dataVersion) : null;
  const INTERVAL_MS = updating ? 2000 : 5000;

  function changed(status) {
    const other = status.computed_at !== shownAt || status.data_version !== shownVersion;
    return other || status.updating !== updating;
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.redirected) return; // sent to the login page: the session is over
      const type = response.headers.get("Content-Type") || "";
      if (response.ok && type.startsWith("application/json")) {
        if (changed(await response.json())) {
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
