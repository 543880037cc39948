// Draws the reports page's charts from the JSON the server put in #report-data.
// The same numbers are in the tables under each chart; without this script the page still
// says everything, only less pleasantly.
(function () {
  "use strict";
  if (typeof Chart === "undefined") return;
  var source = document.getElementById("report-data");
  if (!source) return;
  var data = JSON.parse(source.textContent);

  // Okabe–Ito, readable by colour-blind people; grey for "other hosts".
  var PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
  var OTHER = "#adb5bd";
  var MAX_HOST_SERIES = 8;

  function size(bytes) {
    var units = ["B", "KB", "MB", "GB", "TB", "PB"];
    var value = Math.abs(bytes), i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return (bytes < 0 ? "−" : "") + (i === 0 ? value : value.toFixed(value < 10 ? 1 : 0)) + " " + units[i];
  }
  function shortDay(iso) {
    var d = new Date(iso + "T00:00:00");
    return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  }

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = "#495057";
  Chart.defaults.animation = false; // reports are read, not watched
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
  Chart.defaults.maintainAspectRatio = false;

  var bytesAxis = { beginAtZero: true, ticks: { callback: function (v) { return size(v); } } };
  var dayAxis = { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12, callback: function (v) { return shortDay(this.getLabelForValue(v)); } }, grid: { display: false } };
  var bytesTooltip = { callbacks: { label: function (c) { return c.dataset.label + ": " + size(c.parsed.y); } } };

  // Bytes on disk: one stacked area per host (the biggest ones; the rest together).
  (function () {
    var hosts = Object.keys(data.host_bytes).sort(function (a, b) {
      var la = data.host_bytes[a], lb = data.host_bytes[b];
      return lb[lb.length - 1] - la[la.length - 1];
    });
    var shown = hosts.slice(0, hosts.length > MAX_HOST_SERIES ? MAX_HOST_SERIES - 1 : MAX_HOST_SERIES);
    var rest = hosts.slice(shown.length);
    var datasets = shown.map(function (h, i) {
      return { label: h, data: data.host_bytes[h], borderColor: PALETTE[i], backgroundColor: PALETTE[i] + "55", fill: i === 0 ? "origin" : "-1", pointRadius: 0, borderWidth: 1.5, tension: 0 };
    });
    // Hosts beyond the biggest come summed from the server (other_bytes, other_hosts).
    var summed = data.other_hosts || 0;
    if (rest.length || summed) {
      var other = data.days.map(function (_, d) { return rest.reduce(function (s, h) { return s + data.host_bytes[h][d]; }, summed ? data.other_bytes[d] : 0); });
      datasets.push({ label: (rest.length + summed) + " other hosts", data: other, borderColor: OTHER, backgroundColor: OTHER + "66", fill: "-1", pointRadius: 0, borderWidth: 1.5 });
    }
    new Chart(document.getElementById("chart-disk"), {
      type: "line",
      data: { labels: data.days, datasets: datasets },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: { x: dayAxis, y: Object.assign({ stacked: true }, bytesAxis) },
        plugins: {
          legend: { position: "right" },
          tooltip: { callbacks: {
            title: function (items) { return items.length ? items[0].label : ""; },
            label: bytesTooltip.callbacks.label,
            footer: function (items) { return items.length ? "Fleet: " + size(data.fleet_bytes[items[0].dataIndex]) : ""; },
          } },
        },
      },
    });
  })();

  new Chart(document.getElementById("chart-reclaimed"), {
    type: "bar",
    // Stacked: the top of a bar is what left the model folders that week; its parts are what
    // was freed on disk (deleted, or purged since) and what still waits in quarantine.
    data: { labels: data.weeks, datasets: [
      { label: "Freed on disk", data: data.reclaimed_freed, backgroundColor: "#009E73", borderRadius: 3 },
      { label: "In quarantine", data: data.reclaimed_in_quarantine, backgroundColor: "#E69F00", borderRadius: 3 },
    ] },
    options: {
      scales: { x: Object.assign({ stacked: true }, dayAxis), y: Object.assign({ stacked: true }, bytesAxis) },
      plugins: { legend: { position: "bottom" }, tooltip: { callbacks: {
        title: function (items) { return "Week of " + items[0].label; },
        label: function (c) { return c.dataset.label + ": " + size(c.parsed.y); },
        footer: function (items) { if (!items.length) { return ""; } var i = items[0].dataIndex, n = data.reclaimed_files[i]; return size(data.reclaimed_bytes[i]) + " · " + n + " file" + (n === 1 ? "" : "s"); },
      } } },
    },
  });

  new Chart(document.getElementById("chart-models"), {
    type: "bar",
    data: { labels: data.models_hosts, datasets: [{ label: "Model files", data: data.models_files, backgroundColor: "#0072B2", borderRadius: 3 }] },
    options: {
      indexAxis: data.models_hosts.length > 6 ? "y" : "x",
      scales: { x: { beginAtZero: true, ticks: { precision: 0 } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { legend: { display: false } },
    },
  });

  var r = data.requests;
  new Chart(document.getElementById("chart-requests"), {
    data: {
      labels: data.request_weeks,
      datasets: [
        { type: "line", label: "Pending at week's end", data: r.pending, borderColor: "#E69F00", backgroundColor: "#E69F00", pointRadius: 3, tension: 0, order: 0 },
        { type: "bar", label: "Approved", data: r.approved, backgroundColor: "#009E73", stack: "d", order: 1 },
        { type: "bar", label: "Rejected", data: r.rejected, backgroundColor: "#D55E00", stack: "d", order: 1 },
        { type: "bar", label: "Expired", data: r.expired, backgroundColor: OTHER, stack: "d", order: 1 },
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { x: Object.assign({ stacked: true }, dayAxis), y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { tooltip: { callbacks: { title: function (items) { return "Week of " + items[0].label; } } } },
    },
  });
})();
