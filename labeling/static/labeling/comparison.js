/* The comparison page's keys (the page works as a plain form without this file):
 * A / B / T / X pick the verdict (the radio with that data-key) and put the focus on the
 * submit button, so Enter (or Ctrl+Enter, handled by labeling.js) sends it. Keys typed into a
 * text field or a select are left alone. */
(function () {
  "use strict";

  document.addEventListener("keydown", function (event) {
    var form = document.querySelector("form[data-comparison]");
    if (!form || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && /^(TEXTAREA|INPUT|SELECT)$/.test(target.tagName) && target.type !== "radio" &&
        target.type !== "checkbox") return;
    var key = (event.key || "").toUpperCase();
    var radio = form.querySelector('input[name="outcome"][data-key="' + key + '"]');
    if (!radio) return;
    event.preventDefault();
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    var submit = form.querySelector("[data-primary]");
    if (submit) submit.focus();
  });
})();
