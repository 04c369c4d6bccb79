// Switchboard web chat widget: plain JS, no build step.
// Messages are shown as the server stored them (from the stream), never as raw HTML.
(function () {
  "use strict";
  var log = document.getElementById("sb-log");
  var form = document.getElementById("sb-form");
  var input = document.getElementById("sb-text");
  var status = document.getElementById("sb-status");
  var storageKey = "switchboard.session";
  // The page's own words, in its language (data/widget.yml).
  var words = JSON.parse(document.querySelector(".sb-widget").dataset.words || "{}");
  var shown = {};
  var token = null;

  function setStatus(text) { status.textContent = text || ""; }

  function appendText(parent, text) {
    // Links become anchors; everything else stays text.
    var parts = String(text || "").split(/(https?:\/\/[^\s"<>]+)/);
    parts.forEach(function (part, i) {
      if (i % 2 === 1) {
        var a = document.createElement("a");
        a.href = part; a.textContent = part; a.target = "_blank"; a.rel = "noopener noreferrer";
        parent.appendChild(a);
      } else if (part) {
        parent.appendChild(document.createTextNode(part));
      }
    });
  }

  // A tapped button sends its payload; the customer's own message shows the button's title instead.
  var titles = {};

  // Once the customer writes or taps, earlier buttons are spent: they stay visible, the chosen one marked.
  function retireButtons(sent) {
    log.querySelectorAll(".sb-buttons button:not([disabled])").forEach(function (button) {
      button.disabled = true;
      if (button.value === sent) { button.classList.add("sb-chosen"); }
    });
  }

  // The time of a message, in the customer's own locale and clock.
  function timeOf(iso) {
    var at = new Date(iso);
    var time = document.createElement("time");
    time.className = "sb-time"; time.dateTime = iso;
    time.textContent = at.toLocaleTimeString(document.documentElement.lang || [], { hour: "2-digit", minute: "2-digit" });
    time.title = at.toLocaleString(document.documentElement.lang || []);
    return time;
  }

  // While the bot works on a message: "typing" dots, until something arrives (or 8 s pass).
  var typing = document.createElement("li");
  typing.className = "sb-msg bot sb-typing"; typing.setAttribute("aria-label", words.typing);
  typing.innerHTML = "<span></span><span></span><span></span>";
  var typingTimer = null;
  function setTyping(on) {
    if (typingTimer) { clearTimeout(typingTimer); typingTimer = null; }
    if (on) {
      log.appendChild(typing); log.scrollTop = log.scrollHeight;
      typingTimer = setTimeout(function () { setTyping(false); }, 8000);
    } else if (typing.parentNode) {
      typing.parentNode.removeChild(typing);
    }
  }

  function show(event) {
    if (shown[event.id]) { return; }
    shown[event.id] = true;
    if (event.author === "customer") { retireButtons(event.text); } else { setTyping(false); }
    if (event.author === "customer" && titles[event.text]) { event.text = titles[event.text]; }
    var item = document.createElement("li");
    item.className = "sb-msg " + event.author;
    if (event.author === "agent") {
      var who = document.createElement("span");
      who.className = "sb-who"; who.textContent = event.name ? words.agent.replace("{name}", event.name) : words.team;
      item.appendChild(who);
    }
    appendText(item, event.text);
    if (event.buttons && event.buttons.length) {
      var row = document.createElement("div");
      row.className = "sb-buttons";
      event.buttons.forEach(function (b) {
        var button = document.createElement("button");
        button.type = "button"; button.textContent = b.title; button.value = b.payload;
        titles[b.payload] = b.title;
        button.addEventListener("click", function () { send(b.payload); });
        row.appendChild(button);
      });
      item.appendChild(row);
    }
    if (event.created_at) { item.appendChild(timeOf(event.created_at)); }
    log.insertBefore(item, typing.parentNode ? typing : null);
    log.scrollTop = log.scrollHeight;
  }

  // A new chat opens with the greeting and its quick replies (shown here, never stored).
  if (log.dataset.welcome) {
    var welcome = JSON.parse(log.dataset.welcome);
    show({ id: "welcome", author: "bot", text: welcome.text, buttons: welcome.buttons });
  }

  function newSession() {
    return fetch("/api/web/sessions", { method: "POST" })
      .then(function (r) { if (!r.ok) { throw new Error("session " + r.status); } return r.json(); })
      .then(function (body) { localStorage.setItem(storageKey, body.token); return body.token; });
  }

  var source = null;
  var cursor = 0;
  var pollTimer = null;

  function received(event) { cursor = Math.max(cursor, event.id); setStatus(""); show(event); }

  function connect() {
    if (source) { source.close(); }
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
    source = new EventSource("/api/web/stream?token=" + encodeURIComponent(token) + "&after=" + cursor);
    source.addEventListener("message", function (e) { received(JSON.parse(e.data)); });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (it holds as many as it can): poll, then try the stream again.
        source.close();
        poll(20);
      } else {
        setStatus(words.reconnecting);
      }
    });
  }

  function poll(rounds) {
    fetch("/api/web/events?after=" + cursor, { headers: { "Authorization": "Bearer " + token } })
      .then(function (r) { return r.ok ? r.json() : { events: [] }; })
      .then(function (body) { body.events.forEach(received); })
      .catch(function () { setStatus(words.reconnecting); })
      .then(function () {
        pollTimer = setTimeout(function () { if (rounds > 0) { poll(rounds - 1); } else { connect(); } }, 3000);
      });
  }

  function send(text) {
    var id = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
    return fetch("/api/web/messages", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
      body: JSON.stringify({ text: text, client_message_id: id, language: document.documentElement.lang })
    }).then(function (r) {
      if (r.status === 401) {
        return newSession().then(function (t) { token = t; connect(); return send(text); });
      }
      if (!r.ok) { return r.json().then(function (b) { setStatus(b.message || words.not_sent); }); }
      setStatus("");
      setTyping(true);
    }).catch(function () { setStatus(words.not_sent); });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    send(text);
  });

  // Email verification: a code by email proves the address; the customer with it becomes this chat's.
  var emailStatus = document.getElementById("sb-email-status");
  var codeForm = document.getElementById("sb-code-form");

  function postJson(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (b) { if (!r.ok) { throw new Error(b.message || words.not_sent); } return b; });
    });
  }

  document.getElementById("sb-email-form").addEventListener("submit", function (e) {
    e.preventDefault();
    postJson("/api/web/email", { email: document.getElementById("sb-email-address").value.trim() })
      .then(function () { codeForm.hidden = false; emailStatus.textContent = words.code_sent; })
      .catch(function (error) { emailStatus.textContent = error.message; });
  });

  codeForm.addEventListener("submit", function (e) {
    e.preventDefault();
    postJson("/api/web/email/verify", { code: document.getElementById("sb-email-code").value.trim() })
      .then(function (body) {
        codeForm.hidden = true;
        emailStatus.textContent = body.result === "linked"
          ? words.linked : words.verified;
      })
      .catch(function (error) { emailStatus.textContent = error.message; });
  });

  var saved = localStorage.getItem(storageKey);
  (saved ? Promise.resolve(saved) : newSession()).then(function (t) { token = t; connect(); })
    .catch(function () { setStatus(words.unavailable); });
})();
