// Streams each reply being written into the page (server-sent events), says when the live model
// is down, and reloads when a reply is finished so its buttons appear. Enter sends a message.
(function () {
  "use strict";

  function follow(box) {
    var down = box.parentElement.querySelector(".worker-down");
    var source = new EventSource(box.dataset.eventsUrl);
    var text = "";
    function show(value) { box.textContent = value || "…"; }
    source.addEventListener("token", function (e) { text += JSON.parse(e.data).text; show(text); });
    source.addEventListener("reset", function () { text = ""; show(text); });
    source.addEventListener("down", function (e) {
      if (!down) return;
      down.querySelector("[data-down-text]").textContent = JSON.parse(e.data).text;
      down.hidden = false;
    });
    source.addEventListener("up", function () { if (down) down.hidden = true; });
    function end(e) {
      source.close();
      show(JSON.parse(e.data).text);
      box.classList.remove("streaming");
      box.dataset.finished = "1";
      window.setTimeout(function () { window.location.reload(); }, 300);
    }
    source.addEventListener("done", end);
    source.addEventListener("error", function (e) { if (e.data) end(e); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-events-url]").forEach(follow);
    document.querySelectorAll("textarea[data-send-on-enter]").forEach(function (area) {
      area.addEventListener("keydown", function (e) {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          if (area.value.trim()) area.form.requestSubmit();
        }
      });
    });
  });
})();
