/* PrefLab: the labeling screen. Drag and drop (SortableJS), ranking by keyboard alone, ties, flags;
   written answers (a demonstration, or a rewrite of the best completion) started from a completion.

   The form works without this file: every card has a <select name="tier_ID"> (1 is best; equal numbers
   tie). With it, the selects are hidden and kept in step with the order on screen, so the server gets
   exactly one encoding whichever way the labeler ranked.

   The model is the order of the cards plus one bit per card, data-tied="1": "tied with the card above".
   A card's rank is the number of untied cards up to and including it, so ranks read 1, 2, 2, 3. */
(function () {
  "use strict";

  var STORE = "preflab.label.";
  var CARD = ".rank-card:not(.sortable-fallback)";
  var CLAMP_LINES = 12;

  // --- storage that never throws (private windows, disabled storage) -----------------------------

  function load(key) {
    try { return window.localStorage.getItem(STORE + key); } catch (ignored) { return null; }
  }
  function save(key, value) {
    try { window.localStorage.setItem(STORE + key, value); } catch (ignored) { /* not remembered */ }
  }

  // --- the ranking model --------------------------------------------------------------------------

  function cardsOf(list) {
    return Array.prototype.filter.call(list.children, function (el) { return el.matches(CARD); });
  }
  function nextCard(card) {
    var el = card.nextElementSibling;
    while (el && !el.matches(CARD)) el = el.nextElementSibling;
    return el;
  }
  function prevCard(card) {
    var el = card.previousElementSibling;
    while (el && !el.matches(CARD)) el = el.previousElementSibling;
    return el;
  }
  function isTied(card) { return card.dataset.tied === "1"; }
  function setTied(card, tied) { card.dataset.tied = tied ? "1" : "0"; }
  function name(card) { return "Completion " + card.dataset.letter; }

  /* Start from what the server rendered: the order of the cards and their select values
     (after a refused post they come back as the labeler left them, ties included). */
  function readModel(list) {
    var previous = null;
    cardsOf(list).forEach(function (card) {
      var select = card.querySelector("select");
      var value = select ? select.value : null;
      setTied(card, previous !== null && value !== null && value === previous);
      previous = value;
    });
  }

  /* Number the ranks, and write them into the selects, the badges and the screen-reader text. */
  function refresh(list) {
    var cards = cardsOf(list);
    var rank = 0;
    var size = {};
    cards.forEach(function (card, i) {
      if (i === 0) setTied(card, false);
      if (!isTied(card)) rank += 1;
      card.dataset.rank = String(rank);
      size[rank] = (size[rank] || 0) + 1;
    });
    cards.forEach(function (card, i) {
      var r = card.dataset.rank;
      var inTie = size[r] > 1;
      var following = cards[i + 1];
      card.querySelector("[data-tier]").textContent = r;
      var select = card.querySelector("select");
      if (select) select.value = r;
      var text = card.querySelector("[data-rank-text]");
      if (text) text.textContent = ", rank " + r + (inTie ? ", tied" : "");
      card.classList.toggle("is-tied", isTied(card)); // joined to the card above
      card.classList.toggle("in-tie", inTie);
      card.classList.toggle("tie-start", inTie && !isTied(card));
      card.classList.toggle("tie-end", inTie && !(following && isTied(following)));
      var button = card.querySelector("[data-tie]");
      if (button) {
        button.setAttribute("aria-pressed", isTied(card) ? "true" : "false");
        button.disabled = i === 0;
      }
    });
  }

  /* After `card` moved (its old next card was `oldNext`, and it led its rank if `wasHead`): the other
     cards keep their ties; the moved card joins a tie it landed inside and has a rank of its own
     otherwise. */
  function settle(card, oldNext, wasHead) {
    if (wasHead && oldNext && oldNext !== card && isTied(oldNext)) setTied(oldNext, false);
    var after = nextCard(card);
    setTied(card, Boolean(prevCard(card) && after && isTied(after)));
  }

  function moveBy(list, card, delta) {
    var oldNext = nextCard(card);
    var wasHead = !isTied(card);
    if (delta < 0) {
      var prev = prevCard(card);
      if (!prev) return false;
      list.insertBefore(card, prev);
    } else {
      if (!oldNext) return false;
      list.insertBefore(card, oldNext.nextElementSibling);
    }
    settle(card, oldNext, wasHead);
    return true;
  }

  function tie(card) {
    if (!prevCard(card) || isTied(card)) return false;
    setTied(card, true); // a tie this card led comes along: the two ranks merge
    return true;
  }

  function untie(list, card) {
    var next = nextCard(card);
    if (!isTied(card)) {
      if (next && isTied(next)) { // it leads a tie: it keeps this rank, the others take the next one
        setTied(next, false);
        return true;
      }
      return false;
    }
    if (next && isTied(next)) { // inside a tie: step out, just below it
      var last = next;
      while (nextCard(last) && isTied(nextCard(last))) last = nextCard(last);
      list.insertBefore(card, last.nextElementSibling);
    }
    setTied(card, false);
    return true;
  }

  function tiedWith(card) {
    var list = card.parentNode;
    return cardsOf(list).filter(function (other) {
      return other !== card && other.dataset.rank === card.dataset.rank;
    }).map(function (other) { return other.dataset.letter; });
  }

  function describe(card) {
    var others = tiedWith(card);
    return "rank " + card.dataset.rank + (others.length ? ", tied with " + others.join(" and ") : "");
  }

  // --- announcements (aria-live) ------------------------------------------------------------------

  var announceTimer = null;
  function announce(message) {
    var region = document.getElementById("label-announcer");
    if (!region) return;
    region.textContent = "";
    window.clearTimeout(announceTimer);
    // Cleared first and set a moment later, so that saying the same thing twice is heard twice.
    announceTimer = window.setTimeout(function () { region.textContent = message; }, 30);
  }

  // --- per-task set-up (the first page, then every swapped-in task) -------------------------------

  function init(root) {
    var task = root && root.matches && root.matches("[data-label-task]") ? root
      : root && root.querySelector ? root.querySelector("[data-label-task]") : null;
    if (!task || task.__labelReady) return;
    task.__labelReady = true;
    task.__shownAt = Date.now();
    task.classList.add("has-js");
    rememberInstructions(task);
    clampLongText(task);
    var list = task.querySelector("[data-rank-list]");
    if (!list) return;
    readModel(list);
    refresh(list);
    if (window.Sortable) {
      var drag = null;
      list.__sortable = window.Sortable.create(list, {
        draggable: CARD,
        handle: ".rank-card__handle",
        animation: 150,
        forceFallback: true, // pointer events for mouse, pen and touch alike (no native drag image)
        fallbackOnBody: true,
        fallbackTolerance: 3,
        scroll: true,
        bubbleScroll: true,
        ghostClass: "is-ghost",
        chosenClass: "is-chosen",
        dragClass: "is-dragging",
        onChoose: function (evt) { evt.item.focus({ preventScroll: true }); },
        onStart: function (evt) {
          drag = { next: nextCard(evt.item), head: !isTied(evt.item) };
          list.classList.add("is-sorting");
        },
        onEnd: function (evt) {
          list.classList.remove("is-sorting");
          if (drag && evt.oldIndex !== evt.newIndex) {
            settle(evt.item, drag.next, drag.head);
            refresh(list);
            announce(name(evt.item) + " moved to " + describe(evt.item) + ".");
          }
          drag = null;
          evt.item.focus({ preventScroll: true });
        },
      });
    }
  }

  function rememberInstructions(task) {
    var panel = task.querySelector("[data-instructions]");
    if (!panel) return;
    var wanted = load("instructions");
    var project = task.dataset.projectId;
    var version = Number(task.dataset.instructionsVersion || 0);
    var seen = Number(load("seen." + project) || 0);
    var open = wanted === "closed" ? false : wanted === "open" ? true : panel.open;
    if (seen && version > seen) { // new instructions since this labeler last looked: show them once
      open = true;
      var badge = panel.querySelector("[data-instructions-updated]");
      if (badge) badge.hidden = false;
    }
    save("seen." + project, String(version));
    panel.__ignoreToggle = panel.open !== open; // the toggle event our own change fires is not the labeler's
    panel.open = open;
    panel.addEventListener("toggle", function () {
      if (panel.__ignoreToggle) { panel.__ignoreToggle = false; return; }
      save("instructions", panel.open ? "open" : "closed");
    });
  }

  /* Long texts fold to about twelve lines behind a "Show more" button (without JS they show whole). */
  function clampLongText(task) {
    Array.prototype.forEach.call(task.querySelectorAll("[data-clamp]"), function (box, i) {
      var line = parseFloat(window.getComputedStyle(box).lineHeight) || 22;
      var limit = Math.round(line * CLAMP_LINES);
      if (box.scrollHeight <= limit + 3 * line) return; // a few lines over: not worth a button
      box.id = box.id || "label-text-" + i;
      box.style.setProperty("--clamp-height", limit + "px");
      box.classList.add("is-clamped");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "show-more";
      button.setAttribute("aria-controls", box.id);
      button.setAttribute("aria-expanded", "false");
      button.textContent = "Show more";
      box.insertAdjacentElement("afterend", button);
    });
  }

  function toggleText(button) {
    var box = document.getElementById(button.getAttribute("aria-controls"));
    if (!box) return;
    var open = box.classList.toggle("is-expanded");
    button.textContent = open ? "Show less" : "Show more";
    button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function toggleHelp() {
    var dialog = document.getElementById("label-help");
    if (!dialog || typeof dialog.showModal !== "function") return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  // --- written answers: a demonstration, or a ranking's rewrite of its best completion -------------

  function rawText(holder) {
    var template = holder && holder.querySelector("template[data-raw-text]");
    return template ? template.content.textContent : "";
  }

  function putCaretAtEnd(box) {
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  /* "Start from B": the answer becomes B's text, and the form says where it came from. */
  function startFrom(button) {
    var form = button.closest("form");
    var box = form.querySelector("[data-answer]");
    var card = button.closest(".start-card");
    var text = rawText(card);
    var untouched = !box.value.trim() || box.value === box.dataset.startedWith;
    if (!untouched && !window.confirm("Replace what you wrote with this completion?")) return;
    box.value = text;
    box.dataset.startedWith = text;
    var select = form.querySelector("[data-edited-from]");
    if (select) select.value = button.dataset.startFrom;
    putCaretAtEnd(box);
    announce("Started from " + button.textContent.replace("Start from ", "completion ") + ": edit it in the answer box.");
  }

  /* Opening "Rewrite the best completion" starts from the card ranked first (unless already begun). */
  function openRewrite(task) {
    var panel = task.querySelector("[data-rewrite]");
    var list = task.querySelector("[data-rank-list]");
    if (!panel || !list) return;
    var box = panel.querySelector("[data-rewrite-text]");
    var best = cardsOf(list)[0];
    if (best && !box.value.trim()) {
      box.value = rawText(best);
      box.dataset.original = box.value;
      panel.querySelector("[data-rewrite-from]").value = best.dataset.completionId;
      announce("Rewriting " + name(best) + ", ranked first.");
    }
    if (!panel.open) { panel.__ours = true; panel.open = true; }
    putCaretAtEnd(box);
  }

  document.addEventListener("toggle", function (event) {
    var panel = event.target;
    if (!(panel instanceof Element) || !panel.matches("[data-rewrite]") || !panel.open) return;
    if (panel.__ours) { panel.__ours = false; return; }
    openRewrite(panel.closest("[data-label-task]"));
  }, true); // toggle does not bubble

  // --- events (delegated: tasks come and go) -----------------------------------------------------

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    var more = target.closest(".show-more");
    if (more && more.closest("[data-label-task]")) { toggleText(more); return; }
    if (target.closest("[data-label-help]")) { toggleHelp(); return; }
    var start = target.closest("[data-start-from]");
    if (start) { startFrom(start); return; }
    var button = target.closest("[data-tie]");
    if (button) {
      var card = button.closest(".rank-card");
      var list = card.parentNode;
      var changed = isTied(card) ? untie(list, card) : tie(card);
      if (changed) {
        refresh(list);
        announce(name(card) + (isTied(card) ? " tied: " : " untied: ") + describe(card) + ".");
      }
    }
  });

  function typing(el) {
    return el instanceof Element && Boolean(el.closest("input[type=text], input:not([type]), textarea, select, [contenteditable]"));
  }

  document.addEventListener("keydown", function (event) {
    var task = document.querySelector("[data-label-task].has-js");
    if (!task || event.defaultPrevented || event.isComposing) return;
    var target = event.target;
    var form = task.querySelector("#label-form");

    var inTask = target === document.body || (target instanceof Element && task.contains(target));
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && form && inTask) {
      event.preventDefault();
      form.requestSubmit(form.querySelector("#label-submit"));
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(target)) return;
    if (event.key === "?") {
      event.preventDefault();
      toggleHelp();
      return;
    }
    if (event.key === "w" && inTask && task.querySelector("[data-rewrite]")) {
      event.preventDefault();
      openRewrite(task);
      return;
    }
    var card = target instanceof Element ? target.closest(".rank-card") : null;
    if (!card || !task.contains(card)) return;
    var list = card.parentNode;
    var key = event.key;

    if (key === "ArrowUp" || key === "k" || key === "ArrowDown" || key === "j") {
      event.preventDefault();
      var up = key === "ArrowUp" || key === "k";
      if (moveBy(list, card, up ? -1 : 1)) {
        refresh(list);
        announce(name(card) + " moved to " + describe(card) + ".");
      } else {
        announce(name(card) + " is already " + (up ? "first" : "last") + ".");
      }
      card.focus({ preventScroll: true });
      card.scrollIntoView({ block: "nearest" });
    } else if (key === "t" || key === "u") {
      event.preventDefault();
      var changed = key === "t" ? tie(card) : untie(list, card);
      if (changed) refresh(list);
      card.focus({ preventScroll: true });
      if (key === "t") {
        announce(changed ? name(card) + " tied: " + describe(card) + "."
          : prevCard(card) ? name(card) + " is already tied with the rank above." : name(card) + " is first: nothing above to tie with.");
      } else {
        announce(changed ? name(card) + " untied: " + describe(card) + "." : name(card) + " is not tied.");
      }
    } else if (/^[1-9]$/.test(key)) {
      var boxes = card.querySelectorAll(".rank-card__flags input[type=checkbox]");
      var box = boxes[Number(key) - 1];
      if (!box) return;
      event.preventDefault();
      box.checked = !box.checked;
      announce("Flag “" + box.value.replace(/_/g, " ") + "” " + (box.checked ? "set on " : "removed from ") + name(card) + ".");
    } else if (key === "e") {
      var more = card.querySelector(".show-more");
      if (more) { event.preventDefault(); toggleText(more); }
    }
  });

  // The seconds spent on this task go with the ranking; the selects are in step already, but make sure.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || form.id !== "label-form") return;
    var task = form.closest("[data-label-task]");
    var list = form.querySelector("[data-rank-list]");
    if (list && task && task.classList.contains("has-js")) refresh(list);
    var rewrite = form.querySelector("[data-rewrite-text]");
    if (rewrite && rewrite.value.trim() === (rewrite.dataset.original || "").trim()) rewrite.value = ""; // unchanged: no rewrite
    var field = form.querySelector("[data-seconds]");
    if (field && task && task.__shownAt) field.value = ((Date.now() - task.__shownAt) / 1000).toFixed(1);
  }, true); // capture: before htmx reads the form

  if (window.htmx) {
    window.htmx.onLoad(init);
    // After the settle, not the swap: htmx settles the new element's class attribute last.
    document.addEventListener("htmx:afterSettle", function () {
      // An outerHTML swap replaces the task element: a task not seen before is a newly arrived one.
      var task = document.getElementById("label-task");
      if (!task || task.__arrived) return;
      task.__arrived = true;
      init(task);
      // Start at its top with the first completion focused, and say what happened.
      var first = task.querySelector(".rank-card, [data-answer]");
      var saved = task.querySelector(".label-bar__saved");
      var error = task.querySelector(".label-error");
      var said = saved ? saved.textContent.replace("\u2713", "").trim() + " " : "";
      if (error) {
        announce(error.textContent.replace(/\s+/g, " ").trim());
        return;
      }
      task.scrollIntoView({ block: "start" });
      if (first) first.focus({ preventScroll: true });
      announce(said + (first ? "Next task loaded." : "Nothing left to rank."));
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    init(document.body);
    var task = document.getElementById("label-task");
    if (task) task.__arrived = true; // the page's own task, not one swapped in
  });
})();
