// The page's only script: ask /analyze and draw its answer. No library, nothing from elsewhere.
"use strict";

const form = document.getElementById("form");
const source = document.getElementById("source");
const beam = document.getElementById("beam");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");

function element(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function showStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

async function describeModel() {
  try {
    const health = await (await fetch("/health")).json();
    document.getElementById("model").textContent =
      `${health.topology} model ${health.checkpoint}; up to ${health.max_lines} lines of ` +
      `${health.max_chars} characters`;
    if (health.beam === null) {
      document.getElementById("beam-field").hidden = true;
    } else {
      beam.value = health.beam;
      beam.max = health.max_beam;
    }
    if (health.topology !== "translate") {
      document.getElementById("translate").textContent =
        { classify: "Classify", tag: "Tag", generate: "Generate" }[health.topology] || "Run";
    }
  } catch (err) {
    showStatus("the server does not answer", true);
  }
  document.body.dataset.ready = "true";
}

// Attention weights in [0, 1] as a blue shade; the weight itself in the cell's tooltip.
function heatmap(analysis) {
  const table = element("table", { class: "heatmap" });
  const head = table.createTHead().insertRow();
  head.appendChild(element("th"));
  for (const piece of analysis.source_pieces) head.appendChild(element("th", { scope: "col" }, piece));
  const body = table.createTBody();
  analysis.attention.forEach((row, i) => {
    const tr = body.insertRow();
    tr.appendChild(element("th", { scope: "row" }, analysis.target_pieces[i]));
    row.forEach((weight, j) => {
      const cell = element("td", {
        title: `${analysis.target_pieces[i]} ← ${analysis.source_pieces[j]}: ${weight.toFixed(3)}`,
      });
      cell.style.background = `rgba(26, 95, 180, ${Math.min(1, Math.max(0, weight))})`;
      tr.appendChild(cell);
    });
  });
  const wrap = element("div", { class: "heatmap-wrap" });
  wrap.appendChild(table);
  return wrap;
}

// Tags above the words they label.
function tagTable(analysis) {
  const table = element("table", { class: "tags" });
  const tags = table.insertRow();
  tags.className = "tag";
  const words = table.insertRow();
  analysis.words.forEach((word, i) => {
    const tag = analysis.tags[i];
    tags.appendChild(element("td", tag === "O" ? { class: "outside" } : {}, tag));
    words.appendChild(element("td", {}, word));
  });
  return table;
}

function draw(lines, answer) {
  results.replaceChildren();
  answer.analyses.forEach((analysis, i) => {
    const box = element("div", { class: "result", "data-output": analysis.output });
    box.appendChild(element("p", { class: "source" }, lines[i]));
    if (analysis.label !== null && analysis.label !== undefined) {
      box.appendChild(element("p", { class: "output" })).appendChild(
        element("span", { class: "label" }, analysis.label));
    }
    if (analysis.tags) {
      box.appendChild(tagTable(analysis));
    } else if (analysis.label === null || analysis.label === undefined) {
      box.appendChild(element("p", { class: "output translation" }, analysis.output));
    }
    if (analysis.attention) box.appendChild(heatmap(analysis));
    results.appendChild(box);
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const lines = source.value.split("\n");
  while (lines.length > 1 && lines[lines.length - 1].trim() === "") lines.pop();
  const request = { text: lines };
  if (!document.getElementById("beam-field").hidden && beam.value !== "") {
    request.beam = Number(beam.value);
  }
  showStatus("working…", false);
  try {
    const response = await fetch("/analyze", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const answer = await response.json();
    if (!response.ok) {
      showStatus(answer.error || `error ${response.status}`, true);
      return;
    }
    draw(lines, answer);
    showStatus("", false);
  } catch (err) {
    showStatus(`the request failed: ${err}`, true);
  }
});

describeModel();
