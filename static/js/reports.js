// Follows queued and rendering jobs without reloading the page: progress, then a download link.
(function () {
  "use strict";
  var script = document.currentScript;
  var downloadLabel = (script && script.dataset.downloadLabel) || "Download";

  function update(row, job) {
    row.dataset.status = job.status;
    var badge = row.querySelector(".job-badge");
    badge.textContent = job.status_label;
    badge.className = "badge job-badge " + (job.status === "done" ? "text-bg-success" : job.status === "failed" ? "text-bg-danger" : "text-bg-info");
    var bar = row.querySelector(".job-progress");
    bar.hidden = job.status === "done" || job.status === "failed";
    bar.setAttribute("aria-valuenow", job.progress);
    bar.querySelector(".progress-bar").style.width = job.progress + "%";
    row.querySelector(".job-data-version").textContent = job.data_version === null ? "\u2013" : job.data_version;
    row.querySelector(".job-message").textContent = job.status === "failed" ? job.error : job.message;
    var actions = row.querySelector(".job-actions");
    if (job.download_url && !actions.querySelector("a")) {
      var link = document.createElement("a");
      link.className = "btn btn-sm btn-outline-primary";
      link.href = job.download_url;
      link.textContent = downloadLabel;
      actions.appendChild(link);
    }
    if (job.status === "failed") window.location.reload(); // shows the retry button
  }

  function poll() {
    var active = document.querySelectorAll('#jobs tr[data-status="queued"], #jobs tr[data-status="running"]');
    if (!active.length) return;
    active.forEach(function (row) {
      fetch(row.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (job) { if (job) update(row, job); })
        .catch(function () {});
    });
    window.setTimeout(poll, 1500);
  }
  window.setTimeout(poll, 1000);
})();
