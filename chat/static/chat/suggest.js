// Live suggestions on the dialogue page: a "Suggest" button on every assistant turn asks the
// live model to answer the dialogue so far and streams its reply into that turn; pressing it
// again ("Another") asks for a different one. The turn's suggestion is remembered in the form
// (`live_suggestions`: turn number -> suggestion key) so the saved dialogue records what it
// started from and how much was changed.
(function () {
  "use strict";

  function csrf(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function turnsBefore(list, item) {
    var turns = [];
    var items = list.querySelectorAll("li");
    for (var i = 0; i < items.length && items[i] !== item; i++) {
      turns.push({role: i % 2 === 0 ? "user" : "assistant",
                  content: items[i].querySelector("textarea").value});
    }
    return turns;
  }

  function remember(form, number, key) {
    var field = form.querySelector("input[name=live_suggestions]");
    if (!field) return;
    var map = {};
    try { map = JSON.parse(field.value || "{}") || {}; } catch (e) { map = {}; }
    map[number] = key;
    field.value = JSON.stringify(map);
  }

  function suggest(form, list, item, button, status) {
    var area = item.querySelector("textarea");
    var number = Array.prototype.indexOf.call(list.children, item) + 1;
    button.disabled = true;
    status.textContent = "Asking the model…";
    fetch(form.dataset.suggestUrl, {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf(form)},
      body: JSON.stringify({turns: turnsBefore(list, item),
                            seed: Math.floor(Math.random() * 2147483647)}),
      credentials: "same-origin",
    }).then(function (response) {
      return response.json().then(function (body) { return {ok: response.ok, body: body}; });
    }).then(function (reply) {
      if (!reply.ok) throw new Error(reply.body.error || "The suggestion failed.");
      var text = "";
      var source = new EventSource(reply.body.events_url);
      status.textContent = reply.body.model + " is writing…";
      area.value = "";
      source.addEventListener("token", function (e) { text += JSON.parse(e.data).text; area.value = text; });
      source.addEventListener("reset", function () { text = ""; area.value = ""; });
      source.addEventListener("down", function (e) { status.textContent = JSON.parse(e.data).text; });
      function end(e, failed) {
        source.close();
        var data = JSON.parse(e.data);
        if (failed) { status.textContent = "The suggestion failed: " + data.text; }
        else {
          area.value = data.text;
          remember(form, number, reply.body.key);
          status.textContent = "A suggestion from " + reply.body.model + ": edit it until it is right.";
          area.dispatchEvent(new Event("input", {bubbles: true}));  // keeps the draft
        }
        button.textContent = "Another";
        button.disabled = false;
      }
      source.addEventListener("done", function (e) { end(e, false); });
      source.addEventListener("error", function (e) { if (e.data) end(e, true); });
    }).catch(function (error) {
      status.textContent = error.message;
      button.disabled = false;
    });
  }

  function equip(form, list) {
    list.querySelectorAll("li").forEach(function (item, i) {
      var existing = item.querySelector("[data-suggest]");
      if (i % 2 === 0) { if (existing) existing.parentElement.remove(); return; }
      if (existing) return;
      var bar = document.createElement("div");
      bar.className = "suggest-bar";
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = "Suggest";
      button.setAttribute("data-suggest", "");
      var status = document.createElement("span");
      status.className = "muted";
      status.setAttribute("role", "status");
      bar.appendChild(button);
      bar.appendChild(status);
      item.appendChild(bar);
      button.addEventListener("click", function () { suggest(form, list, item, button, status); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-suggest-url]");
    if (!form) return;
    var list = form.querySelector("[data-turns]");
    equip(form, list);
    new MutationObserver(function () { equip(form, list); }).observe(list, {childList: true});
  });
})();
