// Live panels (host page, request page): the server renders the panel, this swaps it in.
// Polls every second while something is in flight (an order asked or running, a progress bar),
// every 15 s otherwise, every 60 s while the tab is hidden; a failed poll keeps the old panel
// and says so. A request page's panel is swapped only while the request is in flight or when
// its state changed, so a comment being typed in the decision form is never wiped.
(function () {
  "use strict";
  var panel = document.querySelector("[data-live-url]");
  if (!panel) return;
  var timer = null;
  var busy = panel.dataset.busy === "true";

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, document.hidden ? 60000 : busy ? 1000 : 15000);
  }

  function say(text, bad) {
    var state = panel.querySelector(".live-state");
    if (!state) return;
    state.textContent = text;
    state.classList.toggle("text-danger", !!bad);
  }

  function refresh() {
    fetch(panel.dataset.liveUrl, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (data) {
        var changed = data.state !== undefined && data.state !== panel.dataset.state;
        if (data.state === undefined || busy || changed) {
          panel.innerHTML = data.html;
          panel.dataset.state = data.state || "";
        }
        busy = !!data.busy;
        say("Live · updated " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("Not updating: the dashboard did not answer", true); })
      .finally(schedule);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
    else schedule();
  });
  schedule();
})();
