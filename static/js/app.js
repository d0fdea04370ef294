/* PrefLab: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  if (window.htmx) {
    // htmx 2 swaps only 2xx responses by default. Our fragments for refused input (409 conflict,
    // 413 too large, 422 invalid, 429 rate limited) are meant to be shown in place, so swap them too.
    // Other errors (401, 403, 404, 5xx) stay unswapped and are reported in the flash area instead.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "409|413|422|429", swap: true, error: false },
      { code: "[45]..", swap: false, error: true },
      { code: "...", swap: false },
    ];
    // Never evaluate <script> tags that arrive in swapped content.
    htmx.config.allowScriptTags = false;
    htmx.config.includeIndicatorStyles = false;

    document.addEventListener("htmx:beforeSwap", function (event) {
      // A session that ended mid-page: the server redirected the request to the login page.
      // Go there as a whole page instead of swapping a login form into a fragment.
      var xhr = event.detail.xhr;
      if (xhr && xhr.responseURL) {
        try {
          var url = new URL(xhr.responseURL);
          if (url.pathname === "/login" && window.location.pathname !== "/login") {
            event.detail.shouldSwap = false;
            window.location.assign(url.pathname + url.search);
          }
        } catch (ignored) { /* old browsers without URL(): let htmx swap */ }
      }
    });

    document.addEventListener("htmx:responseError", function (event) {
      var xhr = event.detail.xhr;
      showFlash("error", messageFrom(xhr) || ("The request failed (HTTP " + xhr.status + ")."));
    });

    document.addEventListener("htmx:sendError", function () {
      showFlash("error", "Could not reach the server. Check your connection and try again.");
    });

    document.addEventListener("htmx:afterRequest", function (event) {
      // Clear an upload form once its file was imported, so it is not uploaded twice by accident.
      var elt = event.detail.elt;
      var created = event.detail.xhr && event.detail.xhr.status === 201;
      if (created && elt && elt.matches && elt.matches("form.upload-form")) {
        elt.reset();
      }
    });
  }

  function messageFrom(xhr) {
    // The server's error page carries the sentence in .error-card__message.
    try {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var node = doc.querySelector(".error-card__message");
      return node ? node.textContent.trim() : "";
    } catch (ignored) {
      return "";
    }
  }

  function showFlash(kind, text) {
    var area = document.getElementById("flash");
    if (!area) return;
    var box = document.createElement("div");
    box.className = "alert alert--" + kind;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.textContent = text; // textContent: never HTML
    var close = document.createElement("button");
    close.type = "button";
    close.className = "alert__close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", function () { box.remove(); });
    box.appendChild(close);
    area.replaceChildren(box);
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    var copy = target.closest("[data-copy]");
    if (copy) {
      var field = document.querySelector(copy.getAttribute("data-copy"));
      if (field) {
        field.select();
        var done = function () { copy.textContent = "Copied"; };
        if (navigator.clipboard) {
          navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
        } else {
          document.execCommand("copy");
          done();
        }
      }
    }
    if (target.closest("[data-history-back]")) {
      window.history.back();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-history-back]").forEach(function (button) {
      if (window.history.length > 1) button.hidden = false;
    });
  });
})();
