// The ticket page: "Insert" buttons put a suggested or canned reply into the reply box, and the
// transcript follows the conversation live. The transcript arrives as server-rendered (escaped) HTML.
(function () {
  "use strict";
  var reply = document.getElementById("reply-text");

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-insert]");
    if (!button || !reply) { return; }
    var before = reply.value.slice(0, reply.selectionStart);
    var after = reply.value.slice(reply.selectionEnd);
    var text = (before && !/\s$/.test(before) ? "\n" : "") + button.dataset.insert;
    reply.value = before + text + after;
    reply.focus();
    reply.setSelectionRange(before.length + text.length, before.length + text.length);
  });

  // The page opens at its top (where the outcome of an action shows), the transcript at its newest message.
  if ("scrollRestoration" in history) { history.scrollRestoration = "manual"; }
  function newestInView() {
    var messages = document.querySelector("#ticket-live ol.messages");
    if (messages) { messages.scrollTop = messages.scrollHeight; }
  }
  newestInView();

  var live = document.getElementById("ticket-live");
  if (!live || !window.EventSource) { return; }
  var shown = JSON.parse(live.dataset.state);

  function refresh() {
    fetch(live.dataset.fragment, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) { live.innerHTML = html; newestInView(); })
      .catch(function () { /* the next change tries again */ });
  }

  var stream = new EventSource(live.dataset.stream);
  stream.addEventListener("ticket", function (event) {
    var state = JSON.parse(event.data);
    if (state.status !== shown.status || state.assignee !== shown.assignee) {
      // What the agent may do depends on who holds the ticket: reload, unless that loses a draft.
      if (!reply || !reply.value.trim()) { window.location.reload(); return; }
      document.getElementById("ticket-changed").hidden = false;
    }
    if (state.seq !== shown.seq || state.deliveries !== shown.deliveries) { refresh(); }
    shown = state;
  });
})();
