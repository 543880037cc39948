// The reports' host search field: suggestions for what is typed, fetched from a small JSON
// endpoint (at most 20 names) instead of a list of every host in the page. Without this
// script the field still takes a host name typed in full.
(function () {
  "use strict";
  var input = document.querySelector("input[data-suggest]");
  if (!input || !input.list) return;
  var list = input.list;
  var url = input.getAttribute("data-suggest");
  var timer = null;
  var asked = null;

  function show(names) {
    while (list.firstChild) list.removeChild(list.firstChild);
    names.forEach(function (name) {
      var option = document.createElement("option");
      option.value = name;
      list.appendChild(option);
    });
  }

  function ask() {
    var q = input.value.trim();
    if (q === asked) return;
    asked = q;
    fetch(url + "?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        // A slower answer to an older question must not replace the current suggestions.
        if (body && body.q === input.value.trim()) show(body.hosts);
      })
      .catch(function () { /* no suggestions: the field still takes a typed name */ });
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(ask, 150);
  });
  input.addEventListener("focus", ask);
})();
