// Host page: "select all" for the inventory, and a running total of what the selection frees,
// so nobody proposes a request without seeing its size. The server checks everything again.
// The files table is swapped in by live.js after an inventory or a prune answered: the listeners
// sit on the form (events bubble), and the selection is kept by store and path, since a new
// inventory gives every file a new id.
(function () {
  "use strict";
  var form = document.getElementById("propose-form");
  var button = document.getElementById("propose-button");
  var summary = document.getElementById("selection-summary");
  var card = document.getElementById("propose-card");
  if (!form || !button) return;
  var chosen = {};

  function boxes() { return Array.prototype.slice.call(form.querySelectorAll(".file-box")); }

  function human(bytes) {
    var units = ["bytes", "KB", "MB", "GB", "TB"], i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
  }

  function update() {
    var all = boxes();
    var picked = all.filter(function (b) { return b.checked; });
    var total = picked.reduce(function (sum, b) { return sum + Number(b.dataset.size); }, 0);
    chosen = {};
    picked.forEach(function (b) { chosen[b.dataset.key] = true; });
    button.disabled = picked.length === 0;
    summary.textContent = picked.length
      ? picked.length + " file" + (picked.length > 1 ? "s" : "") + ", " + human(total)
      : "Select files above";
    var selectAll = document.getElementById("select-all");
    if (selectAll) selectAll.checked = picked.length > 0 && picked.length === all.length;
    if (card) card.hidden = form.querySelectorAll("tr.file-row").length === 0;
  }

  form.addEventListener("change", function (event) {
    var target = event.target;
    if (target.id === "select-all") boxes().forEach(function (b) { b.checked = target.checked; });
    if (target.id === "select-all" || target.classList.contains("file-box")) update();
  });
  form.addEventListener("ocrdash:part-updated", function () {
    boxes().forEach(function (b) { b.checked = !!chosen[b.dataset.key]; });
    update();
  });
  update();
})();
