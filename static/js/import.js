// The import's page while a worker checks the files or applies them: progress from the status
// document, then the page again once the preview (or its errors, or the applied import) is there.
(function () {
  "use strict";
  const section = document.getElementById("import-progress");
  if (!section) return;
  const bar = section.querySelector(".progress");
  const message = document.getElementById("import-message");
  async function poll() {
    try {
      const response = await fetch(section.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const job = await response.json();
        if (!job.working) {
          window.location.reload();
          return;
        }
        bar.setAttribute("aria-valuenow", job.progress);
        bar.firstElementChild.style.width = job.progress + "%";
        message.textContent = job.message;
      }
    } catch (error) {
      // The network is down for now: try again at the next tick.
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 500);
})();
