// Keyboard triage and the copy button. Everything here is a shortcut: the console works without it.
(function () {
  "use strict";
  function typing(target) {
    return target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field || !navigator.clipboard) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(field.value).then(function () {
          button.textContent = button.textContent.replace(/ ✓$/, "") + " ✓";
        });
      });
    });
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-row]"));
    var current = -1;
    function select(index) {
      if (!rows.length) { return; }
      if (current >= 0) { rows[current].classList.remove("current"); }
      current = Math.max(0, Math.min(rows.length - 1, index));
      rows[current].classList.add("current");
      var link = rows[current].querySelector("a[data-open]");
      if (link) { link.focus(); }
    }
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
      if (event.key === "/") {
        var search = document.querySelector("input[data-key='/']");
        if (search) { event.preventDefault(); search.focus(); }
      } else if (event.key === "j") { select(current + 1); }
      else if (event.key === "k") { select(current - 1); }
      else if (event.key === "x" && current >= 0) {
        var box = rows[current].querySelector("input[type=checkbox]");
        if (box) { box.checked = !box.checked; }
      } else if (event.key === "a") {
        var assess = document.querySelector("#assess select");
        if (assess) { event.preventDefault(); assess.focus(); }
      }
    });
  });
})();
