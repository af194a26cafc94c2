// Shared helpers for the annotator and admin pages. Untrusted text (prompts, answers,
// guidelines, names) is only ever inserted with textContent — never innerHTML.
"use strict";

/** The bearer token from the page's fragment (#token=...), which browsers never send. */
function tokenFromFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  return params.get("token") || "";
}

/** Calls the JSON API; throws an Error carrying the server's message on non-2xx. */
async function api(token, method, path, body, contentType) {
  const headers = { Authorization: "Bearer " + token };
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/json";
    payload = contentType ? body : JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error : response.status + " " + response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

/** Creates an element with text content (and an optional class). */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

/**
 * Renders untrusted text into `container`: paragraphs keep their newlines (CSS
 * white-space: pre-wrap) and ``` fenced blocks become <pre><code>. Text only.
 */
function renderText(container, text) {
  container.replaceChildren();
  const parts = String(text).split(/^```[^\n]*\n?/m);
  parts.forEach((part, index) => {
    if (part === "") return;
    if (index % 2 === 1) {
      const pre = el("pre");
      pre.appendChild(el("code", part.replace(/\n$/, "")));
      container.appendChild(pre);
    } else {
      container.appendChild(el("div", part, "para"));
    }
  });
}

/** Renders a prompt: a string, or a list of {role, content} messages. */
function renderPrompt(container, prompt) {
  container.replaceChildren();
  if (typeof prompt === "string") {
    const body = el("div", null, "text");
    renderText(body, prompt);
    container.appendChild(body);
    return;
  }
  for (const message of prompt) {
    const turn = el("div", null, "turn");
    turn.appendChild(el("div", message.role, "role"));
    const body = el("div", null, "text");
    renderText(body, message.content);
    turn.appendChild(body);
    container.appendChild(turn);
  }
}

/** Shows a message in the page's status line; `kind` is "error" or "info". */
function showStatus(text, kind) {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = text || "";
  status.className = "status " + (kind || "info");
  status.hidden = !text;
}
