/* The labeler UI, progressively enhanced: every page works as plain forms without this file.
 *
 * - Drafts: a form with data-draft-key keeps its fields in localStorage (and the time spent on
 *   it), so a reload or a crash loses nothing; the draft is dropped once a submit succeeded
 *   (the next page is another one).
 * - Time spent: visible time on the page is posted in the form's time_spent_ms field.
 * - Ctrl+Enter (Cmd+Enter) submits the task form; a submitted form cannot be submitted twice.
 * - Lease: htmx renews it every minute; a 4xx answer (lease lost) is shown, not ignored.
 * - Ranking: replies start unplaced in a tray; drag and drop, or the keyboard alone (keys
 *   listed on the page), ties included; the submit waits until every reply is placed. The
 *   rank selects of the no-JavaScript form are kept in step and are what gets posted.
 * - Dialogue: add and remove turns without a round trip.
 */
(function () {
  "use strict";

  var PREFIX = "rlhf-loop:";
  var PENDING = PREFIX + "pending";

  function store() {
    try { return window.localStorage; } catch (e) { return null; }
  }

  function readJSON(key) {
    var ls = store();
    if (!ls) return null;
    try { return JSON.parse(ls.getItem(key) || "null"); } catch (e) { return null; }
  }

  function writeJSON(key, value) {
    var ls = store();
    if (!ls) return;
    try { ls.setItem(key, JSON.stringify(value)); } catch (e) { /* full or private mode */ }
  }

  function forget(key) {
    var ls = store();
    if (!ls) return;
    ls.removeItem(PREFIX + "draft:" + key);
    ls.removeItem(PREFIX + "time:" + key);
    ls.removeItem(PREFIX + "submitted:" + key);
  }

  /* ---------------------------------------------------------------- drafts */

  function draftFields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      if (!el.name || el.disabled) return false;
      if (el.type === "hidden") return el.hasAttribute("data-draft");
      return !/^(submit|button|file|password)$/.test(el.type);
    });
  }

  function saveDraft(form) {
    var data = {};
    draftFields(form).forEach(function (el) {
      var list = data[el.name] || (data[el.name] = []);
      if (el.type === "checkbox" || el.type === "radio") {
        if (el.checked) list.push(el.value);
      } else {
        list.push(el.value);
      }
    });
    writeJSON(PREFIX + "draft:" + form.dataset.draftKey, { saved: Date.now(), fields: data });
    var note = form.querySelector("[data-draft-state]");
    if (note) note.textContent = "Draft saved in this browser";
  }

  function restoreDraft(form) {
    var draft = readJSON(PREFIX + "draft:" + form.dataset.draftKey);
    if (!draft || !draft.fields) return false;
    var fields = draft.fields;
    if (fields.turn && form._ensureTurns) form._ensureTurns(fields.turn.length);
    var seen = {};
    draftFields(form).forEach(function (el) {
      var values = fields[el.name];
      if (!values) return;
      if (el.type === "checkbox" || el.type === "radio") {
        el.checked = values.indexOf(el.value) !== -1;
      } else {
        var i = seen[el.name] || 0;
        seen[el.name] = i + 1;
        if (i < values.length) el.value = values[i];
      }
    });
    var note = form.querySelector("[data-draft-state]");
    if (note) note.textContent = "Draft restored from this browser";
    return true;
  }

  function draftNewerThanPage(form) {
    // The server's values are what was last submitted; a draft saved after that submit holds
    // edits made on the error page since (a reload posts the old values again).
    var draft = readJSON(PREFIX + "draft:" + form.dataset.draftKey);
    var submitted = Number(readJSON(PREFIX + "submitted:" + form.dataset.draftKey)) || 0;
    return !!(draft && draft.saved && submitted && draft.saved > submitted);
  }

  function dropFinishedDraft() {
    // A submit was sent from the page named in PENDING. If this page is that form again, the
    // server refused it and shows it with the message: keep the draft. Otherwise it went through.
    var ls = store();
    var pending = ls && ls.getItem(PENDING);
    if (!pending) return;
    var again = document.querySelector('form[data-draft-key="' + CSS.escape(pending) + '"]');
    if (!again) forget(pending);
    ls.removeItem(PENDING);
  }

  /* ------------------------------------------------------------ time spent */

  function trackTime(form) {
    var key = PREFIX + "time:" + form.dataset.draftKey;
    var input = form.querySelector('input[name="time_spent_ms"]');
    var before = Number(readJSON(key)) || 0;
    var since = document.visibilityState === "visible" ? Date.now() : null;

    function total() {
      return before + (since === null ? 0 : Date.now() - since);
    }
    function pause() {
      before = total();
      since = null;
      writeJSON(key, before);
    }
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") since = Date.now(); else pause();
    });
    window.addEventListener("pagehide", pause);
    form._timeSpent = function () {
      var ms = Math.round(total());
      if (input) input.value = String(ms);
      return ms;
    };
  }

  /* ----------------------------------------------------- submit, once only */

  function guardSubmit(form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.submitting) {
        event.preventDefault();
        return;
      }
      if (form._beforeSubmit) form._beforeSubmit();
      if (form._timeSpent) form._timeSpent();
      if (form.dataset.draftKey) {
        saveDraft(form);
        writeJSON(PREFIX + "submitted:" + form.dataset.draftKey, Date.now());
        var ls = store();
        if (ls) ls.setItem(PENDING, form.dataset.draftKey);
      }
      form.dataset.submitting = "1";
      // Disabled after the browser has collected the values (a disabled submitter is left out).
      setTimeout(function () {
        form.querySelectorAll('button[type="submit"], button:not([type])').forEach(function (b) {
          b.disabled = true;
        });
        form.querySelectorAll("[data-busy-label]").forEach(function (b) {
          b.textContent = b.getAttribute("data-busy-label");
        });
      }, 0);
    });
    // Back/forward cache: a page shown again after its submit went out asks the server again
    // (which says "already submitted"); any other page shown again must be usable again.
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) return;
      if (form.dataset.submitting && form.hasAttribute("data-draft-key")) {
        window.location.reload();
        return;
      }
      delete form.dataset.submitting;
      form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
    });
  }

  function submitForm(form) {
    var button = form.querySelector("[data-primary]");
    if (form.requestSubmit) form.requestSubmit(button || undefined);
    else if (button) button.click();
    else form.submit();
  }

  // Alt+S: skip this task (opens the skip form with its reason in focus).
  document.addEventListener("keydown", function (event) {
    if (!event.altKey || event.ctrlKey || event.metaKey || (event.key || "").toLowerCase() !== "s") return;
    var skip = document.querySelector("details.skip");
    if (!skip) return;
    event.preventDefault();
    skip.open = true;
    var reason = skip.querySelector('input[name="reason"]');
    if (reason) reason.focus();
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var form = document.querySelector("form[data-task-form]");
    if (!form) return;
    event.preventDefault();
    submitForm(form);
  });

  /* ---------------------------------------------------------------- lease */

  // htmx leaves 4xx answers unswapped by default; the lease fragment's 409 carries the message.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500 && event.detail.target.closest("[data-swap-errors]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  function watchLease() {
    // The server renews every minute; if the machine slept past the end of the lease, say so
    // at once (the next renewal may still bring it back if nobody else took the task).
    setInterval(function () {
      var lease = document.querySelector("[data-lease-expires]");
      if (!lease || lease.classList.contains("expired")) return;
      var end = Date.parse(lease.getAttribute("data-lease-expires"));
      if (end && Date.now() > end) {
        lease.classList.remove("ok");
        lease.classList.add("expired");
        lease.textContent = "Your time on this task ran out. Trying to renew it…";
        if (window.htmx) window.htmx.trigger(lease, "renew");
      }
    }, 5000);
  }

  /* ----------------------------------------------------------- local time */

  // The server writes times in UTC; the page shows them in the viewer's own time.
  function localTimes(root) {
    root.querySelectorAll("time[data-local-time]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      el.title = when.toString();
    });
  }
  document.addEventListener("htmx:afterSwap", function () { localTimes(document); });

  /* ----------------------------------------------------------- char count */

  function countChars(textarea) {
    var out = document.getElementById(textarea.getAttribute("data-count"));
    if (!out) return;
    var max = Number(textarea.getAttribute("data-max-chars")) || null;
    function update() {
      var n = textarea.value.length;
      out.textContent = n + (max ? " / " + max : "") + " characters";
    }
    textarea.addEventListener("input", update);
    update();
  }

  /* ---------------------------------------------------------- writing box */

  function writingBox(textarea) {
    // Tab indents inside a ``` code block (elsewhere it moves on, as everywhere); the length
    // limit warns instead of cutting a paste short (the server refuses what is too long); a
    // monospace switch for code.
    var max = Number(textarea.getAttribute("data-max-chars")) || 0;
    var warn = document.createElement("p");
    warn.className = "field-error";
    warn.hidden = true;
    warn.setAttribute("data-limit-warning", "");
    warn.setAttribute("role", "alert");
    textarea.insertAdjacentElement("afterend", warn);

    function inCode() {
      var before = textarea.value.slice(0, textarea.selectionStart);
      return ((before.match(/^\s*```/gm) || []).length % 2) === 1;
    }
    textarea.addEventListener("keydown", function (event) {
      if (event.key !== "Tab" || event.ctrlKey || event.altKey || event.metaKey || !inCode()) return;
      event.preventDefault();
      var start = textarea.selectionStart, end = textarea.selectionEnd;
      if (event.shiftKey) {
        var lineStart = textarea.value.lastIndexOf("\n", start - 1) + 1;
        var spaces = textarea.value.slice(lineStart, lineStart + 4).match(/^ */)[0].length;
        if (!spaces) return;
        textarea.setRangeText("", lineStart, lineStart + spaces, "preserve");
        textarea.setSelectionRange(Math.max(lineStart, start - spaces), Math.max(lineStart, end - spaces));
      } else {
        textarea.setRangeText("    ", start, end, "end");
      }
      textarea.dispatchEvent(new Event("input", { bubbles: true }));
    });
    function checkLength() {
      if (!warn || !max) return;
      var over = textarea.value.length - max;
      warn.hidden = over <= 0;
      warn.textContent = over > 0 ? "Too long by " + over + " characters (at most " + max +
        "): shorten it before submitting." : "";
    }
    textarea.addEventListener("input", checkLength);
    checkLength();
    textarea.classList.toggle("monospace", readJSON(PREFIX + "monospace") === true);
  }

  function monospaceSwitch(box) {
    // One switch per page, remembered in this browser: every writing box in monospace.
    var key = PREFIX + "monospace";
    box.checked = readJSON(key) === true;
    box.addEventListener("change", function () {
      writeJSON(key, box.checked);
      document.querySelectorAll("textarea[data-writing]").forEach(function (t) {
        t.classList.toggle("monospace", box.checked);
      });
    });
  }

  /* -------------------------------------------------------------- dialogue */

  function dialogueEditor(form) {
    var list = form.querySelector("[data-turns]");
    var template = document.getElementById("turn-template");
    var addButton = form.querySelector("[data-turn-add]");
    var removeButton = form.querySelector("[data-turn-remove]");
    if (!list || !template) return;

    function role(i) { return i % 2 === 0 ? "user" : "assistant"; }
    function label(r) { return r === "user" ? "User" : "Assistant"; }

    function refresh() {
      var items = list.querySelectorAll("li");
      items.forEach(function (li, i) {
        var r = role(i);
        li.className = r;
        var id = "turn-" + (i + 1);
        li.querySelector("textarea").id = id;
        var lab = li.querySelector("label");
        lab.setAttribute("for", id);
        lab.textContent = "Turn " + (i + 1) + " · " + label(r);
      });
      var next = role(items.length);
      addButton.textContent = "+ Add " + (next === "user" ? "a user" : "an assistant") + " turn";
      removeButton.disabled = items.length <= 2;
    }

    function add(focus) {
      var li = template.content.firstElementChild.cloneNode(true);
      list.appendChild(li);
      refresh();
      writingBox(li.querySelector("textarea"));
      if (focus) li.querySelector("textarea").focus();
    }

    form._ensureTurns = function (n) {
      while (list.children.length < n) add(false);
      while (list.children.length > n && list.children.length > 2) list.lastElementChild.remove();
      refresh();
    };

    addButton.addEventListener("click", function (event) {
      event.preventDefault();
      add(true);
      saveDraft(form);
    });
    removeButton.addEventListener("click", function (event) {
      event.preventDefault();
      if (list.children.length > 2) list.lastElementChild.remove();
      refresh();
      saveDraft(form);
    });
    refresh();
  }

  /* --------------------------------------------------------------- ranking */

  function ranker(form) {
    // Replies start in a tray, unplaced: a ranking is something the labeler decided, never the
    // order the page happened to show. The submit waits until every reply is placed.
    var list = form.querySelector("[data-cards]");
    var tray = form.querySelector("[data-tray]");
    var trayBox = form.querySelector("[data-tray-box]");
    var trayCount = form.querySelector("[data-tray-count]");
    var empty = form.querySelector("[data-ranking-empty]");
    var unplacedError = form.querySelector("[data-unplaced-error]");
    var live = form.querySelector("[data-announce]");
    var allBad = form.querySelector('input[name="all_bad"]');
    var cards = Array.prototype.slice.call(list.querySelectorAll(".completion"));
    var k = cards.length;
    // The order on screen, kept with the draft so that a tie's cards come back as they were.
    var shown = form.querySelector('input[name="display_order"]');
    if (shown && shown.value) {
      var at = shown.value.split(",");
      cards.sort(function (x, y) {
        return at.indexOf(x.getAttribute("data-id")) - at.indexOf(y.getAttribute("data-id"));
      });
    }
    var groups;

    function select(card) { return card.querySelector("select"); }
    function name(card) { return card.getAttribute("data-name"); }
    function groupOf(card) {
      for (var i = 0; i < groups.length; i++) if (groups[i].indexOf(card) !== -1) return i;
      return -1;
    }
    function unplaced() {
      return cards.filter(function (c) { return groupOf(c) === -1; });
    }

    function fromSelects() {
      // Equal numbers are a tie; the numbers' order is the ranking (as the server reads them).
      // A reply without a number is not placed yet.
      var values = cards.map(function (c) { return parseInt(select(c).value, 10); });
      var distinct = values.filter(function (v) { return !isNaN(v); })
        .sort(function (a, b) { return a - b; })
        .filter(function (v, i, all) { return i === 0 || all[i - 1] !== v; });
      return distinct.map(function (v) {
        return cards.filter(function (c, i) { return values[i] === v; });
      });
    }

    function render(focus, message) {
      var flat = [];
      groups.forEach(function (group, gi) {
        group.forEach(function (card, ci) {
          flat.push(card);
          var tied = ci > 0;
          card.classList.toggle("tied", tied);
          card.querySelector("[data-rank]").textContent = String(gi + 1);
          card.querySelector("[data-tie-note]").hidden = !tied;
          select(card).value = String(gi + 1);
          card.setAttribute("aria-label", name(card) + ", rank " + (gi + 1) +
            (group.length > 1 ? " (tied)" : ""));
        });
      });
      var current = Array.prototype.slice.call(list.children);
      var same = current.length === flat.length && current.every(function (c, i) { return c === flat[i]; });
      if (!same) flat.forEach(function (card) { list.appendChild(card); });
      var waiting = unplaced();
      waiting.forEach(function (card) {
        card.classList.remove("tied");
        card.querySelector("[data-rank]").textContent = "–";
        card.querySelector("[data-tie-note]").hidden = true;
        select(card).value = "";
        card.setAttribute("aria-label", name(card) + ", not placed yet");
        if (card.parentNode !== tray) tray.appendChild(card);
      });
      trayBox.hidden = !waiting.length;
      trayCount.textContent = waiting.length + " of " + k;
      empty.hidden = flat.length > 0;
      if (!waiting.length) unplacedError.hidden = true;
      if (shown) shown.value = flat.concat(waiting).map(function (c) { return c.getAttribute("data-id"); }).join(",");
      if (focus) focus.focus({ preventScroll: false });
      if (message && live) live.textContent = message;
      if (form.dataset.draftKey) saveDraft(form);
    }

    function take(card) {
      var gi = groupOf(card);
      if (gi === -1) return;
      groups[gi].splice(groups[gi].indexOf(card), 1);
      if (!groups[gi].length) groups.splice(gi, 1);
    }

    function placed(card, from) {
      // Keyboard flow: after placing a reply from the tray, go on to the next unplaced one.
      var next = from ? unplaced()[0] : null;
      render(next || card, name(card) + " is now rank " + (groupOf(card) + 1) +
        (next ? "; next: " + name(next) : ""));
    }

    function moveTo(card, rank) {
      var fromTray = groupOf(card) === -1;
      take(card);
      var at = Math.max(0, Math.min(rank - 1, groups.length));
      groups.splice(at, 0, [card]);
      placed(card, fromTray);
    }

    function placeNext(card) {
      if (groupOf(card) !== -1) return;
      groups.push([card]);
      placed(card, true);
    }

    function unplace(card) {
      if (groupOf(card) === -1) return;
      take(card);
      render(card, name(card) + " is back with the unplaced replies");
    }

    function move(card, step) {
      var gi = groupOf(card);
      if (gi === -1) return neighbour(card, step);
      if (groups[gi].length > 1) {
        // Leaving a tie: it becomes its own rank just above or below the group.
        take(card);
        groups.splice(step < 0 ? gi : gi + 1, 0, [card]);
      } else {
        var other = gi + step;
        if (other < 0 || other >= groups.length) return;
        var tmp = groups[other];
        groups[other] = groups[gi];
        groups[gi] = tmp;
      }
      render(card, name(card) + " is now rank " + (groupOf(card) + 1));
    }

    function toggleTie(card) {
      var gi = groupOf(card);
      if (gi === -1) return;
      var group = groups[gi];
      if (group.length > 1 && group.indexOf(card) > 0) {
        take(card);
        groups.splice(gi + 1, 0, [card]);
        render(card, name(card) + " is no longer tied");
      } else if (group.length > 1) {
        // The first card of a tie: untie the one below it instead of jumping.
        var next = group[1];
        take(next);
        groups.splice(gi + 1, 0, [next]);
        render(card, name(next) + " is no longer tied with " + name(card));
      } else if (gi > 0) {
        groups.splice(gi, 1);
        groups[gi - 1].push(card);
        render(card, name(card) + " is tied at rank " + gi);
      }
    }

    function dropAt(card, target, after) {
      if (card === target) return;
      var fromTray = groupOf(card) === -1;
      take(card);
      var gi = target ? groupOf(target) : -1;
      if (gi === -1) groups.push([card]);
      else groups.splice(after ? gi + 1 : gi, 0, [card]);
      placed(card, fromTray);
    }

    function toggleFlag(card, flag) {
      var box = card.querySelector('input[type="checkbox"][value="' + flag + '"]');
      if (!box) return;
      box.checked = !box.checked;
      if (live) live.textContent = name(card) + (box.checked ? " flagged " : " unflagged: ") + flag;
      saveDraft(form);
    }

    function neighbour(card, step) {
      var flat = Array.prototype.slice.call(tray.children).concat(
        Array.prototype.slice.call(list.children));
      var next = flat[flat.indexOf(card) + step];
      if (next) next.focus();
    }

    // Keys act on the focused card (not while typing in a field).
    var FLAG_KEYS = { h: "harmful", u: "untrue", p: "private" };
    form.addEventListener("keydown", function (event) {
      var card = event.target.closest && event.target.closest(".completion");
      if (!card || event.target !== card || event.ctrlKey || event.metaKey || event.altKey) return;
      var key = event.key;
      var handled = true;
      if (key === "ArrowUp") move(card, -1);
      else if (key === "ArrowDown") move(card, +1);
      else if (/^[1-9]$/.test(key) && Number(key) <= k) moveTo(card, Number(key));
      else if (key === "Enter") placeNext(card);
      else if (key === "0" || key === "Delete" || key === "Backspace") unplace(card);
      else if (key === "t" || key === "T") toggleTie(card);
      else if (key === "j" || key === "J") neighbour(card, +1);
      else if (key === "k" || key === "K") neighbour(card, -1);
      else if (FLAG_KEYS[key.toLowerCase()]) toggleFlag(card, FLAG_KEYS[key.toLowerCase()]);
      else if ((key === "b" || key === "B") && allBad) {
        allBad.checked = !allBad.checked;
        if (live) live.textContent = allBad.checked ? "Marked all bad" : "Not all bad";
        saveDraft(form);
      } else handled = false;
      if (handled) event.preventDefault();
    });

    form.addEventListener("click", function (event) {
      var button = event.target.closest("[data-move]");
      if (!button) return;
      event.preventDefault();
      var card = button.closest(".completion");
      var what = button.getAttribute("data-move");
      if (what === "up") move(card, -1);
      else if (what === "down") move(card, +1);
      else if (what === "tie") toggleTie(card);
      else if (what === "place") placeNext(card);
      else if (what === "unplace") unplace(card);
    });

    form.addEventListener("change", function (event) {
      if (event.target.tagName !== "SELECT" || !event.target.closest(".completion")) return;
      groups = fromSelects();
      render(event.target.closest(".completion"));
    });

    // Registered before guardSubmit's listener: a refused submit never reaches it. The
    // browser's own check of the (required) selects would stop the submit silently instead.
    form.noValidate = true;
    form.addEventListener("submit", function (event) {
      var waiting = unplaced();
      if (!waiting.length) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      unplacedError.textContent = "Place every reply first: " + waiting.length +
        " of " + k + " not placed yet.";
      unplacedError.hidden = false;
      waiting[0].focus();
    });

    // Drag and drop (HTML5): drop on the upper half of a card to go above it, lower half below;
    // on the ranking's empty space to go last; on the tray to unplace.
    var dragged = null;
    function clearMarks() {
      cards.forEach(function (c) { c.classList.remove("drop-before", "drop-after"); });
    }
    function dropTarget(event) {
      var target = event.target.closest && event.target.closest(".completion");
      if (target && target !== dragged && target.parentNode === list) {
        var rect = target.getBoundingClientRect();
        return { card: target, after: event.clientY > rect.top + rect.height / 2 };
      }
      if (event.target.closest && event.target.closest("[data-tray-box]")) return { tray: true };
      if (event.target === list || event.target === empty) return { card: null, after: true };
      return null;
    }
    form.addEventListener("dragstart", function (event) {
      var card = event.target.closest && event.target.closest(".completion");
      if (!card) return;
      dragged = card;
      card.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", card.getAttribute("data-id"));
    });
    form.addEventListener("dragover", function (event) {
      if (!dragged) return;
      var t = dropTarget(event);
      clearMarks();
      if (!t) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      if (t.card) t.card.classList.add(t.after ? "drop-after" : "drop-before");
    });
    form.addEventListener("drop", function (event) {
      if (!dragged) return;
      var t = dropTarget(event);
      clearMarks();
      if (!t) return;
      event.preventDefault();
      if (t.tray) unplace(dragged);
      else dropAt(dragged, t.card, t.after);
    });
    form.addEventListener("dragend", function () {
      if (dragged) dragged.classList.remove("dragging");
      dragged = null;
      clearMarks();
    });

    // Keyboard order: card to card; the per-card controls stay clickable (and have keys).
    cards.forEach(function (card) {
      card.tabIndex = 0;
      card.draggable = true;
      card.querySelectorAll("select, input, button").forEach(function (el) { el.tabIndex = -1; });
    });

    groups = fromSelects();
    render(null);
    form._ranking = function () {
      return groups.map(function (g) { return g.map(function (c) { return c.getAttribute("data-id"); }); });
    };
  }

  /* ------------------------------------------------------------ guidelines */

  function rememberOpen(details) {
    // Folded once, the guidelines stay folded for that project (until unfolded again).
    var key = PREFIX + "open:" + details.getAttribute("data-remember");
    var saved = readJSON(key);
    if (saved !== null) details.open = saved;
    details.addEventListener("toggle", function () { writeJSON(key, details.open); });
  }

  /* ------------------------------------------------------------------ init */

  function init() {
    dropFinishedDraft();
    document.querySelectorAll("form[data-task-form]").forEach(function (form) {
      if (form.hasAttribute("data-dialogue")) dialogueEditor(form);
      if (form.dataset.draftKey) {
        // A form re-shown by the server with an error carries what was posted: keep that,
        // unless the draft is newer (typed after the error page came, then reloaded).
        if (!form.hasAttribute("data-server-values") || draftNewerThanPage(form)) restoreDraft(form);
        form.addEventListener("input", function () { saveDraft(form); });
        form.addEventListener("change", function () { saveDraft(form); });
        trackTime(form);
      }
      if (form.hasAttribute("data-ranking")) ranker(form);
      guardSubmit(form);
    });
    document.querySelectorAll("textarea[data-count]").forEach(countChars);
    document.querySelectorAll("details[data-remember]").forEach(rememberOpen);
    if (document.querySelector("[data-lease-expires]")) watchLease();
    var first = document.querySelector("[data-autofocus]") ||
      document.querySelector("[data-tray] .completion, [data-cards] .completion");
    if (first) first.focus();
    document.querySelectorAll("textarea[data-writing]").forEach(writingBox);
    document.querySelectorAll("input[data-monospace]").forEach(monospaceSwitch);
    localTimes(document);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();

  window.rlhfLabeling = { forgetDraft: forget };
})();
