// The annotator's page: consent, then one comparison at a time; consent can be
// withdrawn from the footer at any time.
"use strict";

// `arena`: the campaign asks for a prompt and streams two live answers (arena.js);
// `streaming`: a battle is under way, so there is nothing to vote on yet.
const state = { token: "", assignment: null, choice: null, strength: null, busy: false, consentVersion: null, recheck: null,
  arena: false, streaming: false };
const $ = (id) => document.getElementById(id);
// The "all done" page asks again this often: leases and re-queued items reopen work.
const RECHECK_MS = 30000;

function show(section) {
  for (const id of ["consent", "compose", "work", "done", "withdrawn"]) $(id).hidden = id !== section;
  if (state.recheck !== null) {
    clearInterval(state.recheck);
    state.recheck = null;
  }
  if (section === "done") state.recheck = setInterval(() => act(loadNext), RECHECK_MS);
}

function setProgress(progress) {
  const total = progress.done + progress.remaining;
  $("progress-text").textContent = progress.done + " / " + total;
  $("progress-bar").max = Math.max(total, 1);
  $("progress-bar").value = progress.done;
}

function resetSelection() {
  state.choice = null;
  state.strength = null;
  $("rationale").value = "";
  refreshButtons();
}

function needsStrength() {
  return state.choice === "A" || state.choice === "B";
}

function refreshButtons() {
  for (const b of document.querySelectorAll(".choice")) b.setAttribute("aria-pressed", String(b.dataset.choice === state.choice));
  for (const b of document.querySelectorAll(".strength")) {
    b.setAttribute("aria-pressed", String(b.dataset.strength === state.strength));
    b.disabled = state.choice !== null && !needsStrength();
  }
  $("submit").disabled = state.busy || state.streaming || !state.assignment || state.choice === null ||
    (needsStrength() && state.strength === null);
}

async function loadNext() {
  const data = await api(state.token, "POST", "/api/me/next");
  setProgress(data.progress);
  state.assignment = data.assignment;
  resetSelection();
  if (!state.assignment) {
    show(state.arena ? "compose" : "done");
    return;
  }
  if (state.arena) arenaShowing();
  renderPrompt($("prompt"), state.assignment.prompt);
  renderText($("answer-a"), state.assignment.answer_a);
  renderText($("answer-b"), state.assignment.answer_b);
  show("work");
  document.body.dataset.assignment = String(state.assignment.assignment_id);
}

/** Runs an action, showing its error; ignores input while a request is in flight. */
async function act(action) {
  if (state.busy) return;
  state.busy = true;
  refreshButtons();
  try {
    await action();
    showStatus("");
  } catch (error) {
    showStatus(error.message, "error");
  } finally {
    state.busy = false;
    refreshButtons();
  }
}

function choose(choice) {
  state.choice = choice;
  if (!needsStrength()) state.strength = null;
  refreshButtons();
}

function setStrength(strength) {
  if (state.choice !== null && !needsStrength()) return;
  state.strength = strength;
  refreshButtons();
}

function submit() {
  if ($("submit").disabled || !state.assignment) return;
  const body = { assignment_id: state.assignment.assignment_id, choice: state.choice };
  if (needsStrength()) body.strength = state.strength;
  const rationale = $("rationale").value.trim();
  if (rationale) body.rationale = rationale;
  act(async () => {
    await api(state.token, "POST", "/api/me/votes", body);
    if (state.arena) await arenaReveal(body.assignment_id);
    else await loadNext();
  });
}

function skip() {
  if (!state.assignment) return;
  const body = { assignment_id: state.assignment.assignment_id };
  act(async () => {
    await api(state.token, "POST", "/api/me/skip", body);
    await loadNext();
  });
}

function undo() {
  act(async () => {
    await api(state.token, "POST", "/api/me/undo");
    await loadNext();
    showStatus("Your last vote was withdrawn; vote on it again.", "info");
  });
}

function acceptConsent() {
  act(async () => {
    await api(state.token, "POST", "/api/me/consent", { accept: true, version: state.consentVersion });
    await loadNext();
  });
}

function showWithdrawn(at) {
  $("withdrawn-at").textContent = new Date(at).toISOString();
  $("withdraw-bar").hidden = true;
  show("withdrawn");
}

function withdrawConsent() {
  if (!$("withdraw-confirm").checked) {
    showStatus("Tick the box to confirm: withdrawing cannot be undone.", "error");
    return;
  }
  act(async () => {
    const data = await api(state.token, "POST", "/api/me/withdraw", { confirm: true });
    showWithdrawn(data.withdrawal.withdrawn_at);
  });
}

/** Shows the consent section, saying so when the statement changed since acceptance. */
function askConsent(me) {
  $("consent-changed").hidden = me.consent_at === null;
  show("consent");
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target && event.target.tagName === "TEXTAREA";
  if (typing) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const key = event.key.toLowerCase();
  if (!$("consent").hidden) {
    if (key === "enter") {
      event.preventDefault();
      acceptConsent();
    }
    return;
  }
  const working = !$("work").hidden;
  const actions = {
    a: () => working && choose("A"),
    b: () => working && choose("B"),
    t: () => working && choose("tie"),
    x: () => working && choose("both_bad"),
    "1": () => working && setStrength("slight"),
    "2": () => working && setStrength("clear"),
    "3": () => working && setStrength("strong"),
    enter: () => working && submit(),
    s: () => working && skip(),
    u: () => undo(),
    r: () => working && $("rationale").focus(),
    n: () => working && state.arena && !$("arena-after").hidden && compose(""),
  };
  const action = actions[key];
  if (action) {
    event.preventDefault();
    action();
  }
}

async function start() {
  state.token = tokenFromFragment();
  if (!state.token) {
    showStatus("This page needs your personal link (it ends in #token=...).", "error");
    return;
  }
  for (const b of document.querySelectorAll(".choice")) b.addEventListener("click", () => choose(b.dataset.choice));
  for (const b of document.querySelectorAll(".strength")) b.addEventListener("click", () => setStrength(b.dataset.strength));
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("undo-done").addEventListener("click", undo);
  document.addEventListener("keydown", onKey);
  $("accept-consent").addEventListener("click", acceptConsent);
  $("withdraw").addEventListener("click", withdrawConsent);
  $("check-again").addEventListener("click", () => act(loadNext));
  try {
    const me = await api(state.token, "GET", "/api/me");
    $("campaign-name").textContent = me.campaign.name;
    renderText($("guidelines"), me.campaign.guidelines || "(no guidelines)");
    renderText($("consent-text"), me.campaign.consent);
    state.arena = me.campaign.kind === "arena";
    if (state.arena) arenaSetup(me);
    $("consent-version").textContent = "Version " + me.campaign.consent_version + ", sha256 " + me.campaign.consent_sha256.slice(0, 12);
    state.consentVersion = me.campaign.consent_version;
    setProgress(me.progress);
    if (me.withdrawn_at !== null) showWithdrawn(me.withdrawn_at);
    else if (!me.consent_current) askConsent(me);
    else await loadNext();
  } catch (error) {
    showStatus(error.message, "error");
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
