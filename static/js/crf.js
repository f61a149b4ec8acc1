// Behaviour of the CRF forms: live HBI total, conditional sections, confirmation of removals.
// The server checks every rule again; this only spares the nurse a round trip.
(function () {
  "use strict";

  function byName(name) { return document.querySelector('[name="' + name + '"]'); }
  function wrapper(el) { return el ? el.closest(".mb-3") || el.parentElement : null; }
  // A part holding a field the server refused stays in view with its message, until the nurse
  // changes the control that hides it (the message is then out of date and goes too).
  var changing = false;
  function hide(el, hidden) {
    if (!el) return;
    if (changing && hidden) {
      el.querySelectorAll(".is-invalid").forEach(function (field) { field.classList.remove("is-invalid"); });
      el.querySelectorAll(".invalid-feedback").forEach(function (message) { message.remove(); });
    }
    el.hidden = hidden && !el.querySelector(".is-invalid");
  }
  function onChange(control, update) {
    control.addEventListener("change", function () { changing = true; update(); changing = false; });
    update();
  }
  function show(selector, visible) {
    document.querySelectorAll(selector).forEach(function (el) { hide(el, !visible); });
  }

  // Harvey-Bradshaw Index: when all five components are given, the total is their sum (the rule's
  // home is the model: cohort/models.py Assessment.hbi_total and fill_hbi; shown live here). The parts
  // are read as the server reads whole numbers (cohort.forms.WholeNumberField): digits only, so
  // "2,5" or "1e1" leaves the total open and the server's message at the part, not another sum.
  var WHOLE_NUMBER = /^[0-9]+$/;
  var parts = Array.prototype.slice.call(document.querySelectorAll(".js-hbi-part"));
  var total = document.querySelector(".js-hbi-total");
  var note = document.querySelector(".js-hbi-note");
  function updateHbi() {
    if (!total) return;
    var values = parts.map(function (el) { return el.value.trim(); });
    var complete = values.every(function (v) { return WHOLE_NUMBER.test(v); });
    if (complete) {
      total.value = values.reduce(function (sum, v) { return sum + parseInt(v, 10); }, 0);
      total.readOnly = true;
      if (note) note.textContent = total.dataset.computedText || "Computed from the five components.";
    } else {
      total.readOnly = false;
      if (note) note.textContent = "";
    }
  }
  parts.forEach(function (el) { el.addEventListener("input", updateHbi); });
  updateHbi();

  // 'Visit not done' hides the measurements (they must be empty then).
  var notDone = byName("not_done");
  function updateNotDone() {
    if (!notDone) return;
    var skipped = notDone.value === "yes";
    show(".js-measurements", !skipped);
    var reason = byName("not_done_reason");
    if (reason) hide(wrapper(reason), !skipped);
  }
  if (notDone) onChange(notDone, updateNotDone);

  function toggleOn(controlName, value, fieldNames) {
    var control = byName(controlName);
    if (!control) return;
    function update() {
      fieldNames.forEach(function (name) {
        var field = byName(name);
        if (field) hide(wrapper(field), control.value !== value);
      });
    }
    onChange(control, update);
  }

  // What is hidden must be empty (the dictionary's 'empty otherwise'): clear it before sending,
  // so a value typed before the nurse changed her mind is not refused out of sight.
  var crfForm = document.querySelector("form.crf-form");
  if (crfForm) {
    crfForm.addEventListener("submit", function () {
      crfForm.querySelectorAll("[hidden] input, [hidden] select, [hidden] textarea").forEach(function (el) {
        if (el.type !== "hidden") el.value = "";
      });
    });
  }
  toggleOn("agent", "other", ["agent_other"]);
  toggleOn("status", "discontinued", ["discontinuation_date", "discontinuation_reason"]);
  toggleOn("endoscopy_done", "yes", ["ses_cd"]);

  // Nothing typed is lost. A changed form warns before the page is left (a link in the app, a
  // reload, closing the tab), never on its own submit. When the session ends (static/js/session.js
  // says so before it reloads to the sign-in page) the typed values are kept in this tab's
  // sessionStorage, and the same form offers them back once the nurse has signed in again.
  if (crfForm) {
    var KEPT = "ecrf-kept:" + window.location.pathname + window.location.search;
    var NOT_KEPT = ["csrfmiddlewaretoken", "version", "row"];
    var leaving = false;
    function values() {
      var kept = {};
      new FormData(crfForm).forEach(function (value, name) {
        if (NOT_KEPT.indexOf(name) < 0 && typeof value === "string") kept[name] = value;
      });
      return kept;
    }
    var opened = JSON.stringify(values());
    function changed() { return !leaving && JSON.stringify(values()) !== opened; }

    crfForm.addEventListener("submit", function () { leaving = true; });
    window.addEventListener("beforeunload", function (event) {
      if (changed()) { event.preventDefault(); event.returnValue = ""; }
    });
    document.addEventListener("click", function (event) {
      var link = event.target.closest ? event.target.closest("a[href]") : null;
      if (!link || event.defaultPrevented || link.getAttribute("href").charAt(0) === "#") return;
      if (link.target === "_blank" || !changed()) return;
      if (window.confirm(crfForm.dataset.leaveText)) { leaving = true; } else { event.preventDefault(); }
    });
    document.addEventListener("ecrf:session-ending", function () {
      if (changed()) {
        try { window.sessionStorage.setItem(KEPT, JSON.stringify(values())); } catch (error) { /* storage full or off */ }
      }
      leaving = true;
    });

    var kept = null;
    try { kept = JSON.parse(window.sessionStorage.getItem(KEPT) || "null"); } catch (error) { kept = null; }
    if (kept && JSON.stringify(kept) !== opened) {
      var offer = document.createElement("div");
      offer.className = "alert alert-info d-flex flex-wrap align-items-center gap-2";
      offer.setAttribute("role", "status");
      offer.id = "kept-values";
      var text = document.createElement("span");
      text.textContent = crfForm.dataset.keptText;
      var restore = document.createElement("button");
      restore.type = "button";
      restore.className = "btn btn-sm btn-primary";
      restore.textContent = crfForm.dataset.restoreText;
      var discard = document.createElement("button");
      discard.type = "button";
      discard.className = "btn btn-sm btn-outline-secondary";
      discard.textContent = crfForm.dataset.discardText;
      offer.append(text, restore, discard);
      crfForm.prepend(offer);
      restore.addEventListener("click", function () {
        Object.keys(kept).forEach(function (name) {
          var field = crfForm.querySelector('[name="' + name + '"]');
          if (field && field.type !== "hidden") {
            field.value = kept[name];
            field.dispatchEvent(new Event("input", { bubbles: true }));
            field.dispatchEvent(new Event("change", { bubbles: true }));
          }
        });
        window.sessionStorage.removeItem(KEPT);
        offer.remove();
      });
      discard.addEventListener("click", function () {
        window.sessionStorage.removeItem(KEPT);
        offer.remove();
      });
    } else if (kept) {
      window.sessionStorage.removeItem(KEPT);
    }
  }

  // After a failed save the focus goes to the error summary at the top (read out, one Tab from its
  // first link); each link puts the focus in its field, its label in view.
  var summary = document.getElementById("error-summary");
  if (summary) {
    summary.focus();
    summary.querySelectorAll("a[data-field]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        var field = document.getElementById(link.getAttribute("href").slice(1));
        if (!field) return;
        event.preventDefault();
        var label = document.querySelector('label[for="' + field.id + '"]');
        (label || field).scrollIntoView({ block: "start" });
        field.focus({ preventScroll: true });
      });
    });
  }

  // Removing a row asks for confirmation, and for a reason when the row was complete.
  document.querySelectorAll("form.js-confirm").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.complete) {
        var reason = window.prompt(form.dataset.confirm + "\n" + (form.dataset.reasonPrompt || "Reason for change:"));
        if (!reason) { event.preventDefault(); return; }
        form.querySelector('[name="reason_for_change"]').value = reason;
      } else if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });
})();
