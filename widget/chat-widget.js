/*
 * Pelvic-health assistant chat widget. Talks to Rasa's socket.io channel (credentials.yml) through the
 * socket.io client bundle that `make widget` copies from npm into widget/vendor/ (load it before this file).
 *
 * <script src=".../widget/chat-widget.js" data-rasa-url="https://bot.example.org" defer></script>
 * Optional data-title="...", data-open="true" (start with the chat open).
 *
 * - Bot text is always put in the page with textContent, never as HTML.
 * - The conversation id and the transcript are kept in localStorage for as long as Rasa keeps the
 *   conversation (60 minutes of inactivity), so a reload shows the same conversation; "New chat" clears both.
 * - A message whose `custom.triage_level` is EMERGENCY (domain.yml) is shown as an alert with a "Call 911" link.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var data = (script && script.dataset) || {};
  var RASA_URL = data.rasaUrl || window.location.origin;
  var TITLE = data.title || "Pelvic health assistant";
  var STORAGE_KEY = "clinicbot-chat:" + RASA_URL;
  var MAX_AGE_MS = 60 * 60 * 1000; // Rasa's session_expiration_time
  var MAX_MESSAGES = 200;
  var GREETING = "/greet";
  var DISCLAIMER =
    "I share information from published articles on pelvic health. It is not a diagnosis or medical advice. " +
    "In an emergency, call 911.";

  var state = loadState();
  var socket = null;
  var confirmed = false;
  var pending = [];
  var typingTimer = null;
  var ui = {};

  function freshState() {
    return { sessionId: null, messages: [], open: false, greeted: false, savedAt: Date.now() };
  }

  function loadState() {
    try {
      var raw = window.localStorage.getItem(STORAGE_KEY);
      if (!raw) return freshState();
      var saved = JSON.parse(raw);
      if (!saved || !Array.isArray(saved.messages) || Date.now() - (saved.savedAt || 0) > MAX_AGE_MS) {
        window.localStorage.removeItem(STORAGE_KEY);
        return freshState();
      }
      return saved;
    } catch (error) {
      return freshState();
    }
  }

  function saveState() {
    state.savedAt = Date.now();
    if (state.messages.length > MAX_MESSAGES) {
      state.messages = state.messages.slice(state.messages.length - MAX_MESSAGES);
    }
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify(state));
    } catch (error) {
      /* storage full or blocked: the conversation still works, it just won't survive a reload */
    }
  }

  // ---- DOM helpers (textContent only) ----
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function build() {
    var root = el("div", "chatw");
    root.setAttribute("data-chatw", "");

    var launcher = el("button", "chatw-launcher", "Chat with us");
    launcher.type = "button";
    launcher.setAttribute("aria-controls", "chatw-panel");
    launcher.setAttribute("aria-expanded", "false");

    var panel = el("section", "chatw-panel");
    panel.id = "chatw-panel";
    panel.setAttribute("aria-labelledby", "chatw-title");
    panel.hidden = true;

    var header = el("div", "chatw-header");
    var title = el("h2", "chatw-title", TITLE);
    title.id = "chatw-title";
    var restart = el("button", "chatw-header-button", "New chat");
    restart.type = "button";
    restart.title = "Start a new conversation and clear this one from this browser";
    var close = el("button", "chatw-header-button chatw-close", "Close");
    close.type = "button";
    close.setAttribute("aria-label", "Close the chat");
    header.appendChild(title);
    header.appendChild(restart);
    header.appendChild(close);

    var disclaimer = el("p", "chatw-disclaimer", DISCLAIMER);
    disclaimer.id = "chatw-disclaimer";

    // Stays on top once the assistant has flagged an emergency, even when later messages scroll it away.
    var banner = el("div", "chatw-emergency-banner");
    banner.appendChild(el("span", "chatw-emergency-banner-text", "This may be an emergency. Call 911 now."));
    var bannerCall = el("a", "chatw-call chatw-call--banner", "Call 911");
    bannerCall.href = "tel:911";
    banner.appendChild(bannerCall);
    banner.hidden = true;

    var log = el("div", "chatw-log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-label", "Conversation");
    log.tabIndex = 0;

    var typing = el("p", "chatw-typing", "The assistant is typing…");
    typing.setAttribute("role", "status");
    typing.hidden = true;

    var connection = el("p", "chatw-connection");
    connection.setAttribute("role", "status");

    var form = el("form", "chatw-form");
    form.setAttribute("novalidate", "");
    var label = el("label", "chatw-visually-hidden", "Type your message");
    label.setAttribute("for", "chatw-input");
    var input = el("input", "chatw-input");
    input.id = "chatw-input";
    input.type = "text";
    input.name = "message";
    input.autocomplete = "off";
    input.maxLength = 1000;
    input.placeholder = "Type your question";
    input.setAttribute("aria-describedby", "chatw-disclaimer");
    var send = el("button", "chatw-send", "Send");
    send.type = "submit";
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(send);

    panel.appendChild(header);
    panel.appendChild(disclaimer);
    panel.appendChild(banner);
    panel.appendChild(log);
    panel.appendChild(typing);
    panel.appendChild(connection);
    panel.appendChild(form);
    root.appendChild(panel);
    root.appendChild(launcher);
    document.body.appendChild(root);

    ui = { root: root, launcher: launcher, panel: panel, banner: banner, log: log, typing: typing,
           connection: connection, form: form, input: input, restart: restart, close: close };

    launcher.addEventListener("click", function () { setOpen(!state.open, true); });
    close.addEventListener("click", function () { setOpen(false, true); });
    restart.addEventListener("click", startOver);
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        setOpen(false, true);
      }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) {
        input.focus();
        return;
      }
      input.value = "";
      userSays(text, text);
    });
  }

  // ---- rendering ----
  function renderMessage(message) {
    var kind = message.from === "user" ? "user" : "bot";
    var level = message.triageLevel || "";
    var item = el("div", "chatw-msg chatw-msg--" + kind);
    item.appendChild(el("span", "chatw-visually-hidden", kind === "user" ? "You said: " : "Assistant: "));
    if (level === "EMERGENCY") {
      item.className += " chatw-msg--emergency";
      item.setAttribute("role", "alert");
      item.appendChild(el("strong", "chatw-flag", "Emergency"));
    } else if (level === "URGENT") {
      item.className += " chatw-msg--urgent";
      item.appendChild(el("strong", "chatw-flag", "Needs a doctor today"));
    }
    item.appendChild(el("p", "chatw-text", message.text));
    if (level === "EMERGENCY") {
      var call = el("a", "chatw-call", "Call 911");
      call.href = "tel:911";
      item.appendChild(call);
    }
    ui.log.appendChild(item);
  }

  function renderButtons(message) {
    var group = el("div", "chatw-replies");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Suggested replies");
    message.buttons.forEach(function (button) {
      var choice = el("button", "chatw-reply", button.title);
      choice.type = "button";
      choice.addEventListener("click", function () {
        userSays(button.title, button.payload);
        ui.input.focus();
      });
      group.appendChild(choice);
    });
    ui.log.appendChild(group);
  }

  function updateBanner() {
    ui.banner.hidden = !state.messages.some(function (m) { return m.triageLevel === "EMERGENCY"; });
  }

  function renderAll() {
    while (ui.log.firstChild) ui.log.removeChild(ui.log.firstChild);
    state.messages.forEach(renderMessage);
    updateBanner();
    var last = state.messages[state.messages.length - 1];
    if (last && last.buttons && last.buttons.length) renderButtons(last);
    scrollToEnd();
  }

  function removeButtons() {
    var groups = ui.log.querySelectorAll(".chatw-replies");
    for (var i = 0; i < groups.length; i++) groups[i].parentNode.removeChild(groups[i]);
  }

  function scrollToEnd() {
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function setTyping(on) {
    ui.typing.hidden = !on;
    if (typingTimer) window.clearTimeout(typingTimer);
    if (on) typingTimer = window.setTimeout(function () { ui.typing.hidden = true; }, 20000);
  }

  function setConnection(text) {
    ui.connection.textContent = text || "";
    ui.connection.hidden = !text;
  }

  // ---- conversation ----
  function addMessage(message) {
    state.messages.forEach(function (old) { delete old.buttons; });
    state.messages.push(message);
    saveState();
    removeButtons();
    renderMessage(message);
    if (message.buttons && message.buttons.length) renderButtons(message);
    updateBanner();
    scrollToEnd();
  }

  function userSays(shownText, payload) {
    addMessage({ from: "user", text: shownText });
    emitMessage(payload);
    setTyping(true);
  }

  function emitMessage(text) {
    if (confirmed && socket && socket.connected) {
      socket.emit("user_uttered", { message: text, session_id: state.sessionId });
    } else {
      pending.push(text);
      connect();
    }
  }

  function onBotMessage(message) {
    if (!message || typeof message !== "object") return;
    var custom = message.custom && typeof message.custom === "object" ? message.custom : {};
    var text = typeof message.text === "string" ? message.text : "";
    var buttons = (message.quick_replies || message.buttons || [])
      .filter(function (b) { return b && typeof b.title === "string" && typeof b.payload === "string"; })
      .map(function (b) { return { title: b.title, payload: b.payload }; });
    if (!text && !buttons.length) return; // nothing a patient can read (e.g. project metadata only)
    setTyping(false);
    addMessage({
      from: "bot",
      text: text,
      buttons: buttons,
      triageLevel: typeof custom.triage_level === "string" ? custom.triage_level : ""
    });
  }

  function connect() {
    if (socket) return;
    if (typeof window.io !== "function") {
      setConnection("The chat could not load. Please call the clinic.");
      return;
    }
    setConnection("Connecting…");
    socket = window.io(RASA_URL, { path: "/socket.io", transports: ["websocket", "polling"] });
    socket.on("connect", function () {
      confirmed = false;
      socket.emit("session_request", { session_id: state.sessionId });
    });
    socket.on("session_confirm", function (sessionId) {
      var id = typeof sessionId === "string" ? sessionId : sessionId && sessionId.session_id;
      if (state.sessionId && id !== state.sessionId) {
        // The server did not resume the old conversation: start a clean transcript too.
        state = freshState();
        state.open = !ui.panel.hidden;
        renderAll();
      }
      state.sessionId = id;
      confirmed = true;
      setConnection("");
      if (!state.greeted && state.messages.length === 0) {
        state.greeted = true;
        pending.unshift(GREETING);
      }
      saveState();
      var queue = pending;
      pending = [];
      queue.forEach(emitMessage);
    });
    socket.on("bot_uttered", onBotMessage);
    socket.on("disconnect", function () {
      confirmed = false;
      setConnection("Connection lost. Reconnecting…");
    });
    socket.on("connect_error", function () {
      setConnection("Can't reach the assistant right now. Retrying… In an emergency, call 911.");
    });
  }

  function setOpen(open, moveFocus) {
    state.open = open;
    saveState();
    ui.panel.hidden = !open;
    ui.root.classList.toggle("chatw--open", open);
    ui.launcher.setAttribute("aria-expanded", String(open));
    ui.launcher.textContent = open ? "Hide chat" : "Chat with us";
    if (open) {
      connect();
      scrollToEnd();
      if (moveFocus) ui.input.focus();
    } else if (moveFocus) {
      ui.launcher.focus();
    }
  }

  function startOver() {
    if (socket) {
      socket.disconnect();
      socket = null;
    }
    confirmed = false;
    pending = [];
    setTyping(false);
    state = freshState();
    state.open = true;
    try { window.localStorage.removeItem(STORAGE_KEY); } catch (error) { /* ignore */ }
    renderAll();
    saveState();
    connect();
    ui.input.focus();
  }

  function start() {
    build();
    setConnection("");
    renderAll();
    if (state.open || data.open === "true") {
      setOpen(true, false);
    } else if (state.sessionId) {
      connect(); // keep receiving replies to a question asked before the reload
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
