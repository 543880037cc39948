// Live panels (host page, request page): the server renders the panel, this swaps it in.
// Polls every second while something is in flight (an order asked or running, a progress bar),
// every 15 s otherwise, every 60 s while the tab is hidden; a failed poll keeps the old panel
// and says so. A request page's panel is swapped only while the request is in flight or when
// its state changed, so a comment being typed in the decision form is never wiped.
// Other parts of the page marked data-live-part="name" data-version="..." (the host page's
// files table) are sent as ?name=version; the server sends a part again only when its version
// changed, and the part then fires "ocrdash:part-updated" for the page's own script.
// A panel marked data-reload-on-state="true" (the campaign page) reloads the whole page when the
// state changed, so buttons outside the panel (pause, resume, halt) match the new state.
(function () {
  "use strict";
  var panel = document.querySelector("[data-live-url]");
  if (!panel) return;
  var timer = null;
  var busy = panel.dataset.busy === "true";
  var parts = Array.prototype.slice.call(document.querySelectorAll("[data-live-part]"));

  function url() {
    var target = new URL(panel.dataset.liveUrl, window.location.href);
    parts.forEach(function (part) { target.searchParams.set(part.dataset.livePart, part.dataset.version || ""); });
    return target.toString();
  }

  function swapParts(fresh) {
    parts.forEach(function (part) {
      var got = fresh && fresh[part.dataset.livePart];
      if (!got) return;
      part.innerHTML = got.html;
      part.dataset.version = got.version;
      part.dispatchEvent(new CustomEvent("ocrdash:part-updated", { bubbles: true }));
    });
  }

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
    fetch(url(), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (data) {
        var changed = data.state !== undefined && data.state !== panel.dataset.state;
        if (changed && panel.dataset.reloadOnState === "true") {
          window.location.reload();
          return;
        }
        if (data.state === undefined || busy || changed) {
          panel.innerHTML = data.html;
          panel.dataset.state = data.state || "";
        }
        swapParts(data.parts);
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
