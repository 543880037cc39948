// Host page: "select all" for the inventory, and a running total of what the selection frees,
// so nobody proposes a request without seeing its size. The server checks everything again.
(function () {
  "use strict";
  var boxes = Array.prototype.slice.call(document.querySelectorAll(".file-box"));
  var all = document.getElementById("select-all");
  var button = document.getElementById("propose-button");
  var summary = document.getElementById("selection-summary");
  if (!button) return;

  function human(bytes) {
    var units = ["bytes", "KB", "MB", "GB", "TB"], i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
  }

  function update() {
    var chosen = boxes.filter(function (b) { return b.checked; });
    var total = chosen.reduce(function (sum, b) { return sum + Number(b.dataset.size); }, 0);
    button.disabled = chosen.length === 0;
    summary.textContent = chosen.length
      ? chosen.length + " file" + (chosen.length > 1 ? "s" : "") + ", " + human(total)
      : "Select files above";
    if (all) all.checked = chosen.length > 0 && chosen.length === boxes.length;
  }

  boxes.forEach(function (b) { b.addEventListener("change", update); });
  if (all) all.addEventListener("change", function () {
    boxes.forEach(function (b) { b.checked = all.checked; });
    update();
  });
  update();
})();
