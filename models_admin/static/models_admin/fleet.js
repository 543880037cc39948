// Keeps the fleet table fresh without reloading the page: every 10 s while the tab is
// visible, every 60 s while it is hidden. The server renders the rows (one source of truth
// for the markup); this only swaps them in. A failed poll keeps the old rows and says so.
(function () {
  "use strict";
  var tbody = document.getElementById("fleet-rows");
  var totals = document.getElementById("fleet-totals");
  var state = document.getElementById("refresh-state");
  if (!tbody) return;
  var timer = null;

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, document.hidden ? 60000 : 10000);
  }

  function refresh() {
    fetch(tbody.dataset.url + window.location.search, {
      headers: { "Accept": "application/json" },
      credentials: "same-origin",
    })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (data) {
        tbody.innerHTML = data.tbody;
        totals.innerHTML = data.totals;
        state.textContent = "Live · updated " + new Date().toLocaleTimeString();
        state.classList.remove("text-danger");
      })
      .catch(function () {
        state.textContent = "Not updating: the dashboard did not answer";
        state.classList.add("text-danger");
      })
      .finally(schedule);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
    else schedule();
  });
  schedule();
})();
