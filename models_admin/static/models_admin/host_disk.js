// Draws the host page's disk chart from the JSON the server put in #disk-data: free space per
// day, and the forecast's fitted line down to the day the disk is full. The same figure is in
// the text under the chart; without this script the page still says it.
(function () {
  "use strict";
  if (typeof Chart === "undefined") return;
  var source = document.getElementById("disk-data");
  var canvas = document.getElementById("chart-disk-free");
  if (!source || !canvas) return;
  var data = JSON.parse(source.textContent);

  function size(bytes) {
    var units = ["B", "KB", "MB", "GB", "TB", "PB"];
    var value = Math.abs(bytes), i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return (i === 0 ? value : value.toFixed(value < 10 ? 1 : 0)) + " " + units[i];
  }
  function shortDay(iso) {
    var d = new Date(iso + "T00:00:00");
    return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  }

  var datasets = [{
    label: "Free", data: data.free, borderColor: "#0072B2", backgroundColor: "#0072B233",
    fill: "origin", pointRadius: 2, borderWidth: 2, spanGaps: true, tension: 0,
  }];
  if (data.forecast.length) {
    datasets.push({
      label: "Forecast (14-day fit)", data: data.forecast, borderColor: "#D55E00",
      borderDash: [6, 4], pointRadius: 0, borderWidth: 2, fill: false, spanGaps: true,
    });
  }
  var chart = new Chart(canvas, {
    type: "line",
    data: { labels: data.days, datasets: datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 10, callback: function (v) { return shortDay(this.getLabelForValue(v)); } }, grid: { display: false } },
        y: { beginAtZero: true, suggestedMax: data.total, ticks: { callback: function (v) { return size(v); } } },
      },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12 } },
        tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + size(c.parsed.y); } } },
      },
    },
  });
  canvas.dataset.drawn = String(chart.data.datasets.length); // for the browser test: drawn, and how many lines
})();
