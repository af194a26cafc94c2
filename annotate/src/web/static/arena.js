// The arena half of the annotator's page (annotate.js calls in when the campaign's kind
// is "arena"): the annotator writes a prompt, two anonymous models answer side by side,
// streamed from this server as newline-delimited JSON (the browser never talks to a
// model); after the vote the page shows who was who. Model text is inserted with
// textContent only (renderText), as everywhere else.
"use strict";

const arena = { prompt: "", texts: { A: "", B: "" } };

function arenaSetup(me) {
  document.body.classList.add("arena");
  $("arena-prompt").maxLength = me.campaign.max_prompt_chars;
  $("arena-max").textContent = String(me.campaign.max_prompt_chars);
  $("arena-prompt").addEventListener("input", arenaCount);
  $("arena-prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      arenaSend();
    }
  });
  $("arena-send").addEventListener("click", arenaSend);
  $("arena-retry").addEventListener("click", () => battle(arena.prompt));
  $("arena-edit").addEventListener("click", () => compose(arena.prompt));
  $("arena-new").addEventListener("click", () => compose(""));
  $("undo-compose").addEventListener("click", undo);
}

function arenaCount() {
  $("arena-count").textContent = String([...$("arena-prompt").value].length);
}

/** Back to the prompt box, holding `text`. */
function compose(text) {
  state.assignment = null;
  $("arena-prompt").value = text;
  arenaCount();
  showStatus("");
  show("compose");
  $("arena-prompt").focus();
}

function arenaSend() {
  const prompt = $("arena-prompt").value.trim();
  if (!prompt) {
    showStatus("Write a prompt first.", "error");
    return;
  }
  battle(prompt);
}

/** The work section as it is while a battle's answers are shown but not yet revealed. */
function arenaShowing() {
  for (const id of ["arena-waiting", "arena-failed", "arena-reveal", "arena-after", "note-a", "note-b"]) $(id).hidden = true;
  $("model-a").textContent = "";
  $("model-b").textContent = "";
  $("vote-controls").hidden = false;
}

/** Asks for a battle on `prompt` and streams both answers into the page. */
async function battle(prompt) {
  if (state.streaming) return;
  arena.prompt = prompt;
  arena.texts = { A: "", B: "" };
  state.assignment = null;
  state.streaming = true;
  resetSelection();
  arenaShowing();
  renderPrompt($("prompt"), prompt);
  renderText($("answer-a"), "");
  renderText($("answer-b"), "");
  $("panel-a").classList.add("streaming");
  $("panel-b").classList.add("streaming");
  $("arena-waiting").hidden = false;
  showStatus("");
  show("work");
  let settled = false;
  try {
    const response = await fetch("/api/me/arena/battles", {
      method: "POST",
      headers: { Authorization: "Bearer " + state.token, "Content-Type": "application/json" },
      body: JSON.stringify({ prompt }),
    });
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      // Refused before any model was asked (prompt, consent, a battle waiting): back to the box.
      compose(prompt);
      showStatus(message, "error");
      settled = true;
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.trim()) settled = onArenaEvent(JSON.parse(line)) || settled;
      }
    }
    if (!settled) arenaFailed("The connection to the server broke before both answers were stored. Nothing was stored; press Retry.");
  } catch (error) {
    if (!settled) arenaFailed(error.message + " — nothing was stored; press Retry.");
  } finally {
    state.streaming = false;
    $("arena-waiting").hidden = true;
    $("panel-a").classList.remove("streaming");
    $("panel-b").classList.remove("streaming");
    refreshButtons();
  }
}

/** Applies one event of the stream; true once the battle is settled (ready or failed). */
function onArenaEvent(event) {
  const side = event.side ? event.side.toLowerCase() : "";
  switch (event.event) {
    case "delta":
      arena.texts[event.side] += event.text;
      renderText($("answer-" + side), arena.texts[event.side]);
      return false;
    case "done":
      $("panel-" + side).classList.remove("streaming");
      if (event.finish === "length") {
        $("note-" + side).textContent = "(cut at the length limit)";
        $("note-" + side).hidden = false;
      }
      return false;
    case "failed":
      arenaFailed(event.message);
      return true;
    case "ready":
      state.assignment = event.assignment;
      document.body.dataset.assignment = String(event.assignment.assignment_id);
      $("arena-waiting").hidden = true;
      return true;
    default:
      return false;
  }
}

function arenaFailed(message) {
  $("arena-waiting").hidden = true;
  $("vote-controls").hidden = true;
  $("arena-failed").hidden = false;
  showStatus(message, "error");
}

/** After the vote: who answered A and B. */
async function arenaReveal(assignmentId) {
  const revealed = await api(state.token, "GET", "/api/me/arena/reveal/" + assignmentId);
  state.assignment = null;
  resetSelection();
  $("model-a").textContent = "— " + revealed.model_a;
  $("model-b").textContent = "— " + revealed.model_b;
  $("arena-reveal").textContent = "Thank you! A was " + revealed.model_a + ", B was " + revealed.model_b + ".";
  $("arena-reveal").hidden = false;
  $("vote-controls").hidden = true;
  $("arena-after").hidden = false;
  const me = await api(state.token, "GET", "/api/me");
  setProgress(me.progress);
}
