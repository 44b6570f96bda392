/* The run page follows its run: it polls the status (no front-end build, no inline script) and
   reloads once the run has finished, so metrics, log and baseline show as the server renders them. */
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var holder = document.querySelector("[data-run-status-url]");
  if (!holder || holder.getAttribute("data-finished") === "true") {
    return;
  }
  var url = holder.getAttribute("data-run-status-url");
  var badge = holder.querySelector("[data-run-status]");
  var interval = 1000;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (!body) {
          setTimeout(poll, interval * 3);
          return;
        }
        if (body.status !== badge.textContent) {
          badge.textContent = body.status;
          badge.className = "badge state-" + body.status;
        }
        if (body.finished) {
          window.location.reload();
          return;
        }
        interval = Math.min(interval * 1.25, 5000);
        setTimeout(poll, interval);
      })
      .catch(function () {
        setTimeout(poll, 5000);
      });
  }

  setTimeout(poll, interval);
});
