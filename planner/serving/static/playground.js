// The ppdpp playground (served by `ppdpp ui`): plain DOM code, no framework. Every text from the server is put in
// with textContent, never as HTML.
"use strict";

const state = { planners: [], messages: [], busy: false, openFile: null };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || `${response.status} ${response.statusText}`);
  return data;
}

function showError(id, error) {
  const node = document.getElementById(id);
  node.textContent = error ? String(error.message || error) : "";
  node.hidden = !error;
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

// ---- the bar chart of a plan's distribution ---------------------------------------------------------------
function bars(distribution, chosen) {
  const grid = el("div", { class: "bars" });
  const top = Math.max(...Object.values(distribution), 1e-9);
  for (const [name, p] of Object.entries(distribution)) {
    const bar = el("div", { class: "bar", title: `${name}: ${percent(p)}` });
    bar.style.width = `${(100 * p) / top}%`;
    grid.append(el("div", { class: name === chosen ? "bar-row chosen" : "bar-row", "data-strategy": name },
      el("span", { class: "bar-label", text: name }),
      el("div", { class: "bar-track" }, bar),
      el("span", { class: "bar-value", text: percent(p) })));
  }
  return grid;
}

function strategyBadge(strategy, probability) {
  if (strategy === null || strategy === undefined) {
    return el("span", { class: "strategy none", text: "no strategy" });
  }
  return el("span", { class: "strategy", text: `${strategy} · p=${probability.toFixed(2)}` });
}

// ---- chat -----------------------------------------------------------------------------------------------------
function selectedPlanner() {
  return state.planners.find((p) => p.id === document.getElementById("planner-select").value);
}

function describePlanner() {
  const planner = selectedPlanner();
  if (!planner) return;
  document.getElementById("planner-info").textContent = planner.planned
    ? `domain ${planner.domain}: ${planner.strategies.length} strategies`
    : `domain ${planner.domain}: plain prompting, no strategy`;
}

async function loadPlanners() {
  const data = await api("/api/planners");
  state.planners = data.planners;
  const select = document.getElementById("planner-select");
  select.replaceChildren(...data.planners.map((p) => el("option", { value: p.id, text: p.id })));
  describePlanner();
  if (!data.transcripts) {
    document.getElementById("tab-transcripts").title = "start ppdpp ui with --transcripts DIR";
  }
}

function addTurn(role, text, plan) {
  document.getElementById("chat-empty").hidden = true;
  const turn = el("div", { class: `turn ${role === "user" ? "user" : "agent"}` });
  if (plan) {
    turn.append(el("div", { class: "meta" }, strategyBadge(plan.strategy, plan.probability),
      el("span", { class: "who", text: plan.planner })));
  }
  turn.append(el("div", { class: "text", text }));
  if (plan && Object.keys(plan.distribution).length) turn.append(bars(plan.distribution, plan.strategy));
  const conversation = document.getElementById("conversation");
  conversation.append(turn);
  conversation.scrollTop = conversation.scrollHeight;
  return turn;
}

async function send(event) {
  event.preventDefault();
  const input = document.getElementById("message-input");
  const text = input.value.trim();
  if (!text || state.busy) return;
  state.busy = true;
  const button = document.getElementById("send-button");
  button.disabled = true;
  showError("chat-error", null);
  state.messages.push({ role: "user", content: text });
  addTurn("user", text);
  input.value = "";
  const pending = addTurn("agent", "thinking…");
  pending.classList.add("pending");
  try {
    const reply = await api("/api/chat", {
      planner: document.getElementById("planner-select").value,
      system: document.getElementById("system-input").value,
      messages: state.messages,
    });
    pending.remove();
    state.messages.push({ role: "assistant", content: reply.reply, strategy: reply.strategy });
    addTurn("agent", reply.reply, reply);
  } catch (error) {
    pending.remove();
    state.messages.pop();
    showError("chat-error", error);
  } finally {
    state.busy = false;
    button.disabled = false;
    input.focus();
  }
}

function newChat() {
  state.messages = [];
  const conversation = document.getElementById("conversation");
  conversation.replaceChildren(document.getElementById("chat-empty"));
  document.getElementById("chat-empty").hidden = false;
  showError("chat-error", null);
}

// ---- transcripts ------------------------------------------------------------------------------------------
function showView(name) {
  for (const view of ["chat", "transcripts"]) {
    document.getElementById(`${view}-view`).hidden = view !== name;
    document.getElementById(`tab-${view}`).classList.toggle("active", view === name);
  }
  if (name === "transcripts") loadFiles().catch((error) => showError("transcripts-error", error));
}

async function loadFiles() {
  showError("transcripts-error", null);
  const data = await api("/api/transcripts");
  const where = [data.dir, data.critic_mode && `critic: ${data.critic_mode}`].filter(Boolean).join(" · ");
  document.getElementById("transcripts-dir").textContent = where;
  const list = document.getElementById("transcript-files");
  list.replaceChildren(...data.files.map((file) => {
    const button = el("button", { type: "button", class: "transcript-file", "data-name": file.name },
      el("strong", { text: file.policy }), ` (${file.episodes} episodes)`);
    if (file.name === state.openFile) button.classList.add("active");
    button.addEventListener("click", () => openFile(file.name).catch((e) => showError("transcripts-error", e)));
    return el("li", {}, button);
  }));
  if (!data.files.length) list.append(el("li", { class: "muted", text: "no .jsonl files in this folder" }));
}

async function openFile(name) {
  showError("transcripts-error", null);
  const data = await api(`/api/transcripts/${encodeURIComponent(name)}`);
  state.openFile = name;
  for (const button of document.querySelectorAll(".transcript-file")) {
    button.classList.toggle("active", button.dataset.name === name);
  }
  document.getElementById("cases-title").hidden = false;
  const table = document.getElementById("case-table");
  table.hidden = false;
  table.tBodies[0].replaceChildren(...data.episodes.map((episode) => {
    const row = el("tr", { class: "case-row", "data-case": episode.case_id },
      el("td", { text: episode.case_id }),
      el("td", { class: episode.success ? "success-yes" : "success-no", text: episode.success ? "yes" : "no" }),
      el("td", { text: Number(episode.total_reward).toFixed(2) }),
      el("td", { text: String(episode.turns) }));
    row.addEventListener("click", () => openCase(episode.case_id).catch((e) => showError("transcripts-error", e)));
    return row;
  }));
  if (data.episodes.length) await openCase(data.episodes[0].case_id);
}

function outcomeLine(episode) {
  const line = el("div", { class: "outcome" },
    el("span", { class: episode.success ? "success-yes" : "success-no", text: episode.success ? "success" : "failure" }),
    el("span", { text: `reward ${Number(episode.total_reward).toFixed(2)}` }),
    el("span", { text: `${episode.turns} turns` }));
  for (const [key, value] of Object.entries(episode.metrics || {})) {
    line.append(el("span", { class: key.startsWith("oracle") || key.startsWith("critic_") ? "oracle" : "metric",
      text: `${key} ${Number(value).toFixed(2)}` }));
  }
  if (episode.repeated) line.append(el("span", { class: "success-no", text: "stopped: repeated" }));
  return line;
}

function speakerLine(speaker, text) {
  return el("p", { class: "line" }, el("span", { class: "speaker", text: `${speaker}:` }), text);
}

function stepBlock(step, criticMode) {
  const block = el("div", { class: "step", "data-turn": String(step.turn) });
  block.append(el("div", { class: "meta" }, strategyBadge(step.strategy, step.probability),
    el("span", { class: "who", text: `turn ${step.turn}` })));
  block.append(speakerLine("agent", step.agent), speakerLine("user", step.user));
  const samples = step.critic_samples || [];
  const judge = el("div", { class: "judge", text:
    `reward ${Number(step.reward).toFixed(2)} · ${step.success ? "success" : "not yet"} · ` +
    (criticMode === "oracle" ? "oracle outcome:" : `critic${criticMode ? ` (${criticMode})` : ""}:`) });
  judge.append(el("ul", { class: "critic-samples" }, ...samples.map((s) => el("li", { text: s }))));
  block.append(judge);
  if (step.distribution && Object.keys(step.distribution).length) {
    block.append(el("details", { class: "bars-box" }, el("summary", { text: "distribution" }),
      bars(step.distribution, step.strategy)));
  }
  return block;
}

async function openCase(caseId) {
  const data = await api(`/api/cases/${encodeURIComponent(caseId)}`);
  for (const row of document.querySelectorAll(".case-row")) row.classList.toggle("active", row.dataset.case === caseId);
  document.getElementById("case-empty").hidden = true;
  const title = document.getElementById("case-title");
  title.hidden = false;
  title.textContent = `case ${caseId}`;
  const columns = [...data.columns].sort((a, b) => (b.name === state.openFile) - (a.name === state.openFile));
  document.getElementById("case-columns").replaceChildren(...columns.map((column) => {
    const box = el("article", { class: "policy-column", "data-policy": column.policy },
      el("h3", { text: column.policy }));
    for (const episode of column.episodes) {
      if (column.episodes.length > 1) box.append(el("p", { class: "muted", text: episode.episode_id }));
      box.append(outcomeLine(episode));
      box.append(el("div", { class: "opening" }, ...(episode.opening || []).map((t) => speakerLine(t.speaker, t.text))));
      for (const step of episode.steps || []) box.append(stepBlock(step, data.critic_mode));
    }
    return box;
  }));
}

// ---- start --------------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("chat-form").addEventListener("submit", send);
  document.getElementById("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) send(event);
  });
  document.getElementById("planner-select").addEventListener("change", describePlanner);
  document.getElementById("new-chat").addEventListener("click", newChat);
  document.getElementById("tab-chat").addEventListener("click", () => showView("chat"));
  document.getElementById("tab-transcripts").addEventListener("click", () => showView("transcripts"));
  loadPlanners().catch((error) => showError("chat-error", error));
});
