// Inactivity warning. The server ends a session SESSION_COOKIE_AGE seconds after its last request;
// every request renews it. A couple of minutes before that, show the warning from
// templates/accounts/_session.html; "Stay signed in" POSTs to the keep-alive endpoint. Once the time
// is up, reload: the server answers with the login page (and brings the user back here afterwards).
// Tabs share the moment of the last renewal through localStorage, so a busy tab keeps the others alive.
(function () {
  "use strict";
  const box = document.getElementById("session-timeout");
  if (!box) return;
  const ageMs = Number(box.dataset.sessionAge) * 1000;
  const warnMs = Math.min(Number(box.dataset.warnSeconds) * 1000, ageMs / 2);
  const countdown = box.querySelector("[data-countdown]");
  const button = box.querySelector("[data-keepalive]");
  const STORAGE_KEY = "ecrf-session-renewed-at";
  let renewedAt = 0;

  function sharedRenewedAt() {
    try {
      return Number(window.localStorage.getItem(STORAGE_KEY)) || 0;
    } catch (error) {
      return 0;
    }
  }

  function markRenewed() {
    renewedAt = Date.now();
    try {
      window.localStorage.setItem(STORAGE_KEY, String(renewedAt));
    } catch (error) {
      // private browsing: this tab alone
    }
  }

  function format(ms) {
    const seconds = Math.max(0, Math.ceil(ms / 1000));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  function reloadToLogin() {
    window.clearInterval(timer);
    // A form page keeps what was typed before the page goes (static/js/crf.js).
    document.dispatchEvent(new CustomEvent("ecrf:session-ending"));
    window.location.replace(window.location.href);
  }

  function tick() {
    const left = Math.max(renewedAt, sharedRenewedAt()) + ageMs - Date.now();
    if (left <= 0) {
      reloadToLogin();
    } else if (left <= warnMs) {
      countdown.textContent = format(left);
      box.hidden = false;
    } else {
      box.hidden = true;
    }
  }

  button.addEventListener("click", async function () {
    button.disabled = true;
    try {
      const response = await fetch(box.dataset.keepaliveUrl, {
        method: "POST",
        headers: { "X-CSRFToken": box.dataset.csrfToken, Accept: "application/json" },
        credentials: "same-origin",
        redirect: "manual", // an ended session answers with a redirect to the login page
      });
      if (!response.ok) {
        reloadToLogin();
        return;
      }
      markRenewed();
      tick();
    } catch (error) {
      // network trouble: leave the warning up so the user can try again
    } finally {
      button.disabled = false;
    }
  });

  markRenewed();
  const timer = window.setInterval(tick, 1000);
})();
