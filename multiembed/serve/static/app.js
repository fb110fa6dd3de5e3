// multiembed search page: pick a collection, search by text, by a dropped file or by a hit.
// Plain JavaScript, no build step, no external URLs.
"use strict";

(function () {
  const LIMIT = 12;
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const select = $("collection");
  const query = $("query");
  const fileInput = $("file");
  const dropzone = $("dropzone");
  const status = $("status");
  const errorBox = $("error");
  const results = $("results");
  let busy = 0;
  let latest = 0; // only the newest search may show its results

  // With an API key, the key travels in the HttpOnly cookie the server set when the page was
  // opened with ?key=: same-origin fetches and <img>/<audio>/<video> send it, no URL holds it.
  function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    return fetch(new URL(path.replace(/^\//, ""), document.baseURI), opts);
  }

  function mediaUrl(url) {
    return url ? new URL(url, document.baseURI).href : "";
  }

  // The server's errors are {"error": {"message": ...}}; anything else gets the HTTP status.
  async function failure(response) {
    let message = "";
    try {
      const body = await response.json();
      const error = body && body.error;
      message = (error && (error.message || error)) || body.detail || "";
      if (typeof message !== "string") message = JSON.stringify(message);
    } catch (e) {
      message = "";
    }
    return new Error(
      "HTTP " + response.status + (response.statusText ? " " + response.statusText : "") +
        (message ? ": " + message : "")
    );
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function setStatus(text) {
    status.textContent = text;
  }

  function setBusy(delta) {
    busy += delta;
    document.body.classList.toggle("busy", busy > 0);
    form.setAttribute("aria-busy", busy > 0 ? "true" : "false");
  }

  async function loadCollections() {
    setBusy(1);
    try {
      const response = await api("/collections");
      if (!response.ok) throw await failure(response);
      const body = await response.json();
      const collections = body.collections || [];
      select.textContent = "";
      if (!collections.length) {
        select.appendChild(new Option("No collections yet", ""));
        setStatus("No collections in this database: index something first (multiembed index ...).");
        return;
      }
      const wanted = new URLSearchParams(location.search).get("collection");
      for (const c of collections) {
        const label = c.name + " (" + (c.media || c.modality) + ", " + c.count + " items)";
        const option = new Option(label, c.name);
        option.dataset.media = c.media || "";
        select.appendChild(option);
        if (c.name === wanted) option.selected = true;
      }
      select.dataset.ready = "true";
      setStatus(collections.length + " collection" + (collections.length === 1 ? "" : "s") + ".");
    } catch (e) {
      select.textContent = "";
      select.appendChild(new Option("Unavailable", ""));
      showError("Could not list collections: " + e.message);
    } finally {
      setBusy(-1);
    }
  }

  // body: a JSON object ({text}, {id}) or FormData (a file). describe: what the results are for.
  async function search(body, describe) {
    const name = select.value;
    if (!name) {
      showError("Pick a collection first.");
      return;
    }
    const mine = ++latest;
    showError("");
    setStatus("Searching " + name + " for " + describe + "…");
    results.dataset.state = "loading";
    setBusy(1);
    try {
      const init = { method: "POST" };
      if (body instanceof FormData) {
        body.set("limit", String(LIMIT));
        init.body = body;
      } else {
        init.headers = { "Content-Type": "application/json" };
        init.body = JSON.stringify(Object.assign({ limit: LIMIT }, body));
      }
      const response = await api("/collections/" + encodeURIComponent(name) + "/search", init);
      if (!response.ok) throw await failure(response);
      const hits = (await response.json()).hits || [];
      if (mine !== latest) return;
      render(name, hits);
      setStatus(hits.length + " result" + (hits.length === 1 ? "" : "s") + " for " + describe + ".");
      results.dataset.state = "done";
    } catch (e) {
      if (mine !== latest) return;
      results.textContent = "";
      results.dataset.state = "error";
      setStatus("");
      showError("Search for " + describe + " failed: " + e.message);
    } finally {
      setBusy(-1);
    }
  }

  function searchText() {
    const text = query.value.trim();
    if (!text) {
      showError("Type a query, or drop a file.");
      query.focus();
      return;
    }
    search({ text: text }, "“" + text + "”");
  }

  function searchFile(file) {
    if (!file) return;
    const data = new FormData();
    data.append("file", file, file.name);
    search(data, "the file " + file.name);
  }

  function searchById(hit) {
    search({ id: hit.id }, "items like " + label(hit));
  }

  function label(hit) {
    const source = hit.source || hit.id;
    const parts = String(source).split(/[\\/]/);
    return parts[parts.length - 1] || String(source);
  }

  function element(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function thumbnail(hit) {
    const src = mediaUrl(hit.poster_url || (hit.kind === "image" ? hit.media_url : null));
    if (!src) {
      return element("span", { class: "placeholder", text: hit.kind + ": no preview" });
    }
    const alt = (hit.kind === "video" ? "Video poster: " : "Image: ") + label(hit);
    return element("img", { src: src, alt: alt, loading: "lazy", "data-testid": "hit-thumbnail" });
  }

  function card(hit, rank) {
    const kind = hit.kind || "text";
    const more = "Search by example: " + label(hit);
    const children = [];
    if (kind === "image" || kind === "video") {
      children.push(
        element("button", {
          type: "button", class: "open thumb", title: more, "aria-label": more,
          "data-testid": "hit-open", onclick: () => searchById(hit),
        }, [thumbnail(hit)])
      );
      if (kind === "video" && hit.media_url) {
        children.push(
          element("button", {
            type: "button", class: "play", "data-testid": "hit-play",
            "aria-label": "Play " + label(hit),
            onclick: (event) => {
              const video = element("video", {
                src: mediaUrl(hit.media_url), controls: true, autoplay: true,
                poster: hit.poster_url ? mediaUrl(hit.poster_url) : null,
                "aria-label": "Video: " + label(hit),
              });
              const button = event.currentTarget;
              button.closest("li").querySelector(".thumb").replaceWith(video);
              button.remove();
            },
            text: "▶ Play",
          })
        );
      }
    } else if (kind === "audio") {
      children.push(
        hit.media_url
          ? element("audio", {
              controls: true, preload: "metadata", src: mediaUrl(hit.media_url),
              "aria-label": "Audio: " + label(hit), "data-testid": "hit-audio",
            })
          : element("span", { class: "placeholder", text: "audio: no player" })
      );
      children.push(
        element("button", {
          type: "button", class: "open", "data-testid": "hit-open", onclick: () => searchById(hit),
          "aria-label": "More like this: " + label(hit), text: "More like this",
        })
      );
    } else {
      children.push(
        element("button", {
          type: "button", class: "open snippet", title: more, "data-testid": "hit-open",
          onclick: () => searchById(hit),
        }, [element("span", { text: hit.text || label(hit) })])
      );
    }
    const score = typeof hit.score === "number" ? hit.score.toFixed(4) : String(hit.score);
    children.push(
      element("p", { class: "meta" }, [
        element("span", { class: "score", "data-testid": "hit-score", title: "score" + (hit.score_kind ? " (" + hit.score_kind + ")" : ""), text: score }),
        element("span", { class: "source", title: hit.source || "", text: label(hit) }),
      ])
    );
    return element("li", {
      class: "hit " + kind, "data-testid": "hit",
      dataset: { id: hit.id, kind: kind, rank: String(rank), source: hit.source || "" },
    }, children);
  }

  function render(name, hits) {
    results.textContent = "";
    results.dataset.collection = name;
    hits.forEach((hit, i) => results.appendChild(card(hit, i + 1)));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    searchText();
  });
  fileInput.addEventListener("change", () => {
    searchFile(fileInput.files[0]);
    fileInput.value = "";
  });
  select.addEventListener("change", () => {
    results.textContent = "";
    showError("");
    if (query.value.trim()) searchText();
  });
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    dropzone.addEventListener(type, () => dropzone.classList.remove("over"));
  }
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) searchFile(files[0]);
  });
  // A file dropped anywhere else must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  loadCollections();
})();
