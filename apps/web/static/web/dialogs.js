/* The pipeline page's dialogs (run, schedule): native <dialog> elements, so focus moves into the
   dialog, Tab stays inside it and Escape closes it. A dialog the server re-rendered with errors
   carries data-show and opens at once. The schedule dialog previews the next fire times. */
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-dialog-open]").forEach(function (button) {
    button.addEventListener("click", function () {
      var dialog = document.getElementById(button.getAttribute("data-dialog-open"));
      if (dialog && !dialog.open) {
        dialog.showModal();
      }
    });
  });
  document.querySelectorAll("[data-dialog-close]").forEach(function (button) {
    button.addEventListener("click", function () {
      button.closest("dialog").close();
    });
  });
  document.querySelectorAll("dialog[data-show]").forEach(function (dialog) {
    dialog.showModal();
    var invalid = dialog.querySelector("[aria-invalid=true], .errorlist");
    if (invalid) {
      var row = invalid.closest(".form-row");
      var input = row && row.querySelector("input, select, textarea");
      if (input) {
        input.focus();
      }
    }
  });

  // The run dialog offers the sample toggle only for the stages whose policy allows it (the server
  // lists them: the runs service's answer); for another stage the toggle is hidden and cleared.
  document.querySelectorAll("[data-sample-environments]").forEach(function (row) {
    var allowed = row.getAttribute("data-sample-environments").split(" ");
    var select = row.closest("form").querySelector("select[name=environment]");
    var toggle = row.querySelector("input[name=sample]");
    if (!select || !toggle) {
      return;
    }
    function sync() {
      var offered = allowed.indexOf(select.value) !== -1;
      row.hidden = !offered;
      toggle.disabled = !offered;
      if (!offered) {
        toggle.checked = false;
      }
    }
    select.addEventListener("change", sync);
    sync();
  });

  document.querySelectorAll("form[data-schedule-preview]").forEach(function (form) {
    var url = form.getAttribute("data-schedule-preview");
    var list = form.querySelector("[data-schedule-next]");
    var cron = form.querySelector("[name=cron]");
    var zone = form.querySelector("[name=timezone]");
    var timer = null;

    function show(items, error) {
      list.textContent = "";
      if (error) {
        var li = document.createElement("li");
        li.className = "errorlist";
        li.textContent = error;
        list.appendChild(li);
        return;
      }
      items.forEach(function (item) {
        var li = document.createElement("li");
        var time = document.createElement("time");
        time.setAttribute("datetime", item.iso);
        time.textContent = item.text;
        li.appendChild(time);
        list.appendChild(li);
      });
    }

    function refresh() {
      if (!cron.value.trim()) {
        return;
      }
      var query = new URLSearchParams({ cron: cron.value, timezone: zone.value || "UTC" });
      fetch(url + "?" + query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          return response.json();
        })
        .then(function (body) {
          show(body.next || [], body.error);
        })
        .catch(function () {
          show([], "The preview is unavailable.");
        });
    }

    function later() {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    }

    cron.addEventListener("input", later);
    zone.addEventListener("input", later);
    refresh();
  });
});
