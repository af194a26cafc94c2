// The admin page: campaigns, links, uploads, progress (gold accuracy, withdrawals),
// agreement (disputed items, re-queueing), leaderboard, export.
"use strict";

const admin = { token: "", campaigns: [] };
const $ = (id) => document.getElementById(id);
const fmt = (x, digits) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits === undefined ? 3 : digits));

/** Fills a table body; a cell is text, or a DOM node (a button) put in as is. */
function fillTable(id, rows, flagged) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  rows.forEach((cells, index) => {
    const tr = el("tr");
    if (flagged && flagged[index]) tr.className = "flagged";
    for (const cell of cells) {
      const td = el("td");
      if (cell instanceof Node) td.appendChild(cell);
      else td.textContent = cell === null || cell === undefined ? "" : String(cell);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  });
}

/** A button that runs `action` (errors go to the status line). */
function button(label, action, id) {
  const b = el("button", label);
  if (id) b.id = id;
  b.addEventListener("click", guarded(action));
  return b;
}

function selectedCampaign() {
  return $("campaign-select").value;
}

async function loadCampaigns(selectId) {
  const data = await api(admin.token, "GET", "/api/admin/campaigns");
  admin.campaigns = data.campaigns;
  const select = $("campaign-select");
  const keep = selectId !== undefined ? String(selectId) : select.value;
  select.replaceChildren();
  for (const c of data.campaigns) {
    const option = el("option", c.name);
    option.value = String(c.id);
    select.appendChild(option);
  }
  if (keep && data.campaigns.some((c) => String(c.id) === keep)) select.value = keep;
  fillTable("campaigns", data.campaigns.map((c) => [c.name, c.overlap, c.annotators, c.ready_items + " ready / " + c.items, c.votes]));
  await loadDetails();
}

async function loadDetails() {
  const id = selectedCampaign();
  if (!id) return;
  const base = "/api/admin/campaigns/" + id;
  const [progress, agreement, board] = await Promise.all([
    api(admin.token, "GET", base + "/progress"),
    api(admin.token, "GET", base + "/agreement"),
    api(admin.token, "GET", base + "/leaderboard"),
  ]);
  const campaign = admin.campaigns.find((c) => String(c.id) === id);
  $("consent-current").textContent = "Consent version " + campaign.consent_version + " (sha256 " +
    campaign.consent_sha256.slice(0, 12) + "): " + campaign.consent;
  $("policy-withdrawal").value = campaign.policy.on_withdrawal;
  $("policy-gold").value = campaign.policy.min_gold_accuracy === null ? "" : String(campaign.policy.min_gold_accuracy);
  const consentState = (a) => {
    if (a.withdrawn_at !== null) return "withdrawn " + new Date(a.withdrawn_at).toISOString().slice(0, 16);
    if (a.consent_at === null) return "no";
    return a.consent_version === campaign.consent_version ? "yes (v" + a.consent_version + ")" : "asked again (v" + a.consent_version + ")";
  };
  const gold = (a) => (a.gold_answered === 0 ? "—" : fmt(a.gold_accuracy, 2) + " (" + a.gold_correct + "/" + a.gold_answered + ")");
  const withdrawButton = (a) => (a.withdrawn_at !== null ? "" :
    button("Record withdrawal", () => recordWithdrawal(id, a), "withdraw-" + a.annotator_id));
  const threshold = campaign.policy.min_gold_accuracy;
  fillTable("annotator-progress", progress.annotators.map((a) => [a.name, a.pseudonym, consentState(a), a.done, a.skipped, a.pending, gold(a), withdrawButton(a)]),
    progress.annotators.map((a) => threshold !== null && a.gold_accuracy !== null && a.gold_accuracy < threshold));
  $("gold-summary").textContent = threshold === null ? "No gold threshold: every annotator is exported." :
    "Annotators below " + fmt(threshold, 2) + " gold accuracy (highlighted) are left out of exports.";
  const complete = progress.items.filter((i) => i.votes >= i.overlap).length;
  $("item-summary").textContent = complete + " of " + progress.items.length + " items have all their votes.";
  // Long campaigns: the table shows the first 500 items; the API has them all.
  fillTable("item-progress", progress.items.slice(0, 500).map((i) => [i.item_id, i.external_id || "", i.ready ? "yes" : "waiting", i.votes + " / " + i.overlap, i.assigned, i.gold || ""]));
  const disputed = agreement.items.filter((i) => i.flagged);
  $("disputed-summary").textContent = disputed.length + " of " + agreement.items.length + " items with two or more votes have annotators who disagree.";
  fillTable("disputed", disputed.slice(0, 500).map((i) => [i.unit, i.ratings, fmt(i.agreement, 2), i.majority || "none",
    button("Re-queue (+1 vote)", () => requeue(id, i.unit), "requeue-" + i.unit)]));
  $("agreement-summary").textContent =
    "Raw agreement " + fmt(agreement.raw_agreement) + ", Krippendorff's α " + fmt(agreement.krippendorff_alpha) +
    " over " + agreement.units_with_multiple_ratings + " items with two or more votes.";
  const name = (id) => agreement.names[id] || String(id);
  fillTable("pairs", agreement.pairs.map((p) => [name(p.rater_a) + " × " + name(p.rater_b), p.common_units, fmt(p.agreement), fmt(p.kappa)]));
  fillTable("raters", agreement.raters.map((r) => [name(r.rater), r.compared_units, fmt(r.agreement_with_majority), r.flagged ? "LOW" : ""]));
  await loadArena(id);
  fillTable("leaderboard", board.models.map((m) => [m.model, fmt(m.score, 0), fmt(m.ci_low, 0) + " – " + fmt(m.ci_high, 0), m.wins + " / " + m.losses + " / " + m.ties]));
}

/** Parses "name base_url model [api_key]" lines; errors name the line. */
function arenaModels(text) {
  const lines = text.split("\n").map((s) => s.trim()).filter((s) => s);
  return lines.map((line, index) => {
    const [name, base_url, model, api_key, ...rest] = line.split(/\s+/);
    if (!model || rest.length) throw new Error("arena models, line " + (index + 1) + ": give name base_url model [api_key]");
    return api_key ? { name, base_url, model, api_key } : { name, base_url, model };
  });
}

async function loadArena(id) {
  const data = await api(admin.token, "GET", "/api/admin/campaigns/" + id + "/arena");
  const arena = data.arena;
  $("arena-summary").textContent = arena === null ? "A pairwise campaign: save two or more models to make it an arena." :
    "An arena: each prompt goes to two of these " + arena.models.length + " models, at most " + arena.max_tokens + " tokens each.";
  const models = arena === null ? [] : arena.models;
  fillTable("arena-models", models.map((m) => [m.name, m.base_url, m.model, m.api_key ? "set" : "none"]));
  $("arena-lines").value = models.map((m) => [m.name, m.base_url, m.model].concat(m.api_key ? [m.api_key] : []).join(" ")).join("\n");
  if (arena !== null) $("arena-max-tokens").value = String(arena.max_tokens);
}

async function saveArena(id, lines, maxTokens) {
  const body = { models: arenaModels(lines), max_tokens: maxTokens };
  await api(admin.token, "POST", "/api/admin/campaigns/" + id + "/arena", body);
}

async function recordWithdrawal(id, annotator) {
  if (!window.confirm("Record that " + annotator.name + " withdrew consent? Their votes leave every export.")) return;
  await api(admin.token, "POST", "/api/admin/campaigns/" + id + "/annotators/" + annotator.annotator_id + "/withdraw");
  showStatus("Withdrawal recorded for " + annotator.name + ".", "info");
  await loadCampaigns();
}

async function requeue(id, itemId) {
  const data = await api(admin.token, "POST", "/api/admin/campaigns/" + id + "/items/" + itemId + "/requeue", { extra: 1 });
  showStatus("Item " + itemId + " re-queued: it now wants " + data.overlap + " votes.", "info");
  await loadCampaigns();
}

async function markGold() {
  const id = selectedCampaign();
  if (!id) throw new Error("select a campaign first");
  const itemId = Number($("gold-item").value);
  if (!Number.isInteger(itemId) || itemId <= 0) throw new Error("gold item: give an item id");
  const answer = $("gold-answer").value || null;
  await api(admin.token, "POST", "/api/admin/campaigns/" + id + "/gold", { items: [{ item_id: itemId, answer }] });
  showStatus(answer ? "Item " + itemId + " is gold (" + answer + ")." : "Item " + itemId + " is no longer gold.", "info");
  await loadCampaigns();
}

async function publishConsent() {
  const id = selectedCampaign();
  if (!id) throw new Error("select a campaign first");
  const text = $("consent-new").value;
  const data = await api(admin.token, "POST", "/api/admin/campaigns/" + id + "/consent", { text });
  $("consent-new").value = "";
  showStatus("Consent statement is now version " + data.campaign.consent_version + ".", "info");
  await loadCampaigns();
}

async function savePolicy() {
  const id = selectedCampaign();
  if (!id) throw new Error("select a campaign first");
  const raw = $("policy-gold").value.trim();
  const body = { on_withdrawal: $("policy-withdrawal").value, min_gold_accuracy: raw === "" ? null : Number(raw) };
  await api(admin.token, "POST", "/api/admin/campaigns/" + id + "/policy", body);
  showStatus("Policy saved.", "info");
  await loadCampaigns();
}

async function createCampaign(event) {
  event.preventDefault();
  const body = {
    name: $("new-name").value,
    guidelines: $("new-guidelines").value,
    overlap: Number($("new-overlap").value),
    annotators: $("new-annotators").value.split("\n").map((s) => s.trim()).filter((s) => s),
  };
  if ($("new-consent").value.trim()) body.consent = $("new-consent").value;
  const arenaLines = $("new-arena").value;
  if (arenaLines.trim()) arenaModels(arenaLines); // a bad line is refused before anything is created
  const data = await api(admin.token, "POST", "/api/admin/campaigns", body);
  // The links first: they are shown once, whatever happens next.
  showLinks("Links for " + data.campaign.name, data.annotators);
  await loadCampaigns(data.campaign.id);
  if (arenaLines.trim()) {
    try {
      await saveArena(data.campaign.id, arenaLines, 512);
    } catch (error) {
      throw new Error("campaign created, but its arena models were refused (fix them below and save): " + error.message);
    }
    await loadCampaigns(data.campaign.id);
  }
}

function showLinks(title, annotators) {
  const list = $("links");
  list.replaceChildren(el("li", title + " (shown once — copy them now):"));
  for (const a of annotators) {
    const item = el("li");
    item.appendChild(el("span", a.name + ": ", "link-name"));
    item.appendChild(el("code", window.location.origin + a.path, "annotator-link"));
    list.appendChild(item);
  }
}

async function addAnnotators() {
  if (!selectedCampaign()) throw new Error("create or select a campaign first");
  const names = $("more-annotators").value.split("\n").map((s) => s.trim()).filter((s) => s);
  const data = await api(admin.token, "POST", "/api/admin/campaigns/" + selectedCampaign() + "/annotators", { names });
  showLinks("New links", data.annotators);
  $("more-annotators").value = "";
  await loadCampaigns();
}

async function uploadItems() {
  const file = $("items-file").files[0];
  if (!file) throw new Error("choose a JSONL file first");
  if (!selectedCampaign()) throw new Error("create or select a campaign first");
  const text = await file.text();
  const data = await api(admin.token, "POST", "/api/admin/campaigns/" + selectedCampaign() + "/items", text, "application/x-ndjson");
  showStatus("Uploaded " + data.added + " items (" + data.ready + " ready, " + data.pending + " waiting for answers).", "info");
  await loadCampaigns();
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function exportPairs() {
  const id = selectedCampaign();
  if (!id) throw new Error("select a campaign first");
  const query = "?format=" + $("export-format").value + "&ties=" + $("export-ties").value + "&aggregation=" + $("export-aggregation").value;
  const data = await api(admin.token, "GET", "/api/admin/campaigns/" + id + "/export" + query);
  download("pairs.jsonl", data.pairs, "application/x-ndjson");
  if (data.ties !== null) download("pairs.ties.jsonl", data.ties, "application/x-ndjson");
  download("pairs.manifest.json", JSON.stringify(data.manifest, null, 2) + "\n", "application/json");
  const counts = data.manifest.counts;
  $("export-summary").textContent = "Exported " + counts.pairs + " rows from " + counts.votes + " votes (" +
    counts.ties + " ties, " + counts.both_bad + " both bad, " + counts.no_majority + " without majority, " +
    counts.excluded_low_gold + " votes below the gold threshold left out); sha256 " + data.manifest.content_sha256 + ".";
}

function guarded(action) {
  return async (event) => {
    try {
      showStatus("");
      await action(event);
    } catch (error) {
      showStatus(error.message, "error");
    }
  };
}

async function start() {
  admin.token = tokenFromFragment();
  if (!admin.token) {
    showStatus("Open this page with the admin link (it ends in #token=...).", "error");
    return;
  }
  $("create-form").addEventListener("submit", guarded(createCampaign));
  $("upload").addEventListener("click", guarded(uploadItems));
  $("add-annotators").addEventListener("click", guarded(addAnnotators));
  $("export").addEventListener("click", guarded(exportPairs));
  $("mark-gold").addEventListener("click", guarded(markGold));
  $("publish-consent").addEventListener("click", guarded(publishConsent));
  $("save-policy").addEventListener("click", guarded(savePolicy));
  $("save-arena").addEventListener("click", guarded(async () => {
    const id = selectedCampaign();
    if (!id) throw new Error("select a campaign first");
    await saveArena(id, $("arena-lines").value, Number($("arena-max-tokens").value));
    showStatus("Arena models saved.", "info");
    await loadCampaigns();
  }));
  $("refresh").addEventListener("click", guarded(() => loadCampaigns()));
  $("campaign-select").addEventListener("change", guarded(loadDetails));
  await guarded(() => loadCampaigns())();
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
