// Keeps the console queue live: on every change the server reports, reload the lists and the
// waiting count in the page title. The lists arrive as server-rendered (escaped) HTML.
(function () {
  "use strict";
  var lists = document.getElementById("queue-lists");
  if (!lists || !window.EventSource) { return; }
  var baseTitle = document.title.replace(/^\(\d+\) /, "");

  function refresh() {
    fetch(lists.dataset.fragment, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) { lists.innerHTML = html; })
      .catch(function () { /* the next change tries again */ });
  }

  var stream = new EventSource(lists.dataset.stream);
  stream.addEventListener("queue", function (event) {
    var waiting = JSON.parse(event.data).waiting;
    document.title = (waiting ? "(" + waiting + ") " : "") + baseTitle;
    refresh();
  });
})();
