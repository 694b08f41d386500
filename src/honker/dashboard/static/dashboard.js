// honker dashboard: the one script of its own. Everything works without it; with it the
// "select every job on this page" box of a job list is shown and does what it says.
(function () {
  "use strict";
  function showPickAll() {
    const all = document.getElementById("pick-all");
    if (all) { all.hidden = false; }
  }
  document.addEventListener("change", function (event) {
    const target = event.target;
    if (!(target instanceof HTMLInputElement) || target.id !== "pick-all") { return; }
    for (const box of document.querySelectorAll('#jobs input[name="job"]')) {
      box.checked = target.checked;
    }
  });
  document.addEventListener("DOMContentLoaded", showPickAll);
  document.addEventListener("htmx:afterSwap", showPickAll);
})();
