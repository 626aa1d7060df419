// The Q&A page: streamed answers (SSE over a POST), citations, follow-ups, feedback.
// Served as a file: the CSP allows no inline script. Text goes in with textContent only.
"use strict";
(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const form = document.getElementById("ask");
  const thread = document.getElementById("thread");
  let conversation = null;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function safeUrl(url) {
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) { return null; }
  }

  function post(path, body) {
    return fetch(path, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body)});
  }

  function showCitations(turn, citations) {
    if (!citations.length) return;
    const list = el("ol", "citations");
    for (const c of citations) {
      const item = el("li");
      item.value = c.n;
      const href = safeUrl(c.url);
      const title = href ? el("a", "cite", c.title) : el("span", "cite", c.title);
      if (href) { title.href = href; title.rel = "noopener noreferrer"; }
      item.appendChild(title);
      if (c.quote) item.appendChild(el("span", "quote", "\u201c" + c.quote + "\u201d"));
      list.appendChild(item);
    }
    turn.appendChild(list);
  }

  function showFeedback(turn, question) {
    const box = el("div", "feedback");
    const comment = el("input");
    comment.placeholder = "Comment (optional)";
    comment.maxLength = 2000;
    comment.setAttribute("aria-label", "Feedback comment");
    const status = el("span", "feedback-status");
    for (const [vote, label] of [["up", "Helpful"], ["down", "Not helpful"]]) {
      const b = el("button", "vote-" + vote, label);
      b.type = "button";
      b.addEventListener("click", async () => {
        const r = await post("/feedback", {vote: vote, comment: comment.value,
                                           conversation_id: conversation, question: question});
        status.textContent = r.ok ? "Thanks for the feedback." : "Feedback was not saved.";
      });
      box.appendChild(b);
    }
    box.appendChild(comment);
    box.appendChild(status);
    turn.appendChild(box);
  }

  async function ask(question) {
    const turn = el("article", "turn");
    turn.appendChild(el("p", "question", question));
    const answer = el("p", "answer");
    answer.setAttribute("aria-busy", "true");
    turn.appendChild(answer);
    thread.appendChild(turn);
    const body = {question: question};
    if (conversation) body.conversation_id = conversation;
    const response = await post("/ask", body);
    if (!response.ok) {
      let message = "The question could not be asked.";
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      answer.className = "answer empty";
      answer.textContent = message;
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        const payload = data ? JSON.parse(data) : {};
        if (event === "start") conversation = payload.conversation_id;
        else if (event === "delta") answer.textContent += payload.text;
        else if (event === "error") { answer.className = "answer empty"; answer.textContent = payload.error; }
        else if (event === "done") {
          answer.removeAttribute("aria-busy");
          if (payload.refused) {
            answer.className = "answer empty";
            answer.textContent = payload.message || payload.answer;
          } else {
            answer.textContent = payload.answer;
            showCitations(turn, payload.citations);
          }
          turn.dataset.done = "true";
          showFeedback(turn, payload.question || question);
        }
      }
    }
  }

  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const box = document.getElementById("question");
      const question = box.value.trim();
      if (!question) return;
      box.value = "";
      ask(question);
    });
    document.getElementById("new").addEventListener("click", () => {
      conversation = null;
      thread.textContent = "";
    });
  }

  const explainForm = document.getElementById("explain");
  if (explainForm) {
    explainForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const q = new URLSearchParams({email: document.getElementById("explain-email").value,
                                     doc_id: document.getElementById("explain-doc").value});
      const r = await fetch("/admin/api/explain?" + q, {credentials: "same-origin"});
      document.getElementById("explanation").textContent = JSON.stringify(await r.json(), null, 2);
    });
    for (const b of document.querySelectorAll("button.sync")) {
      b.addEventListener("click", async () => {
        const r = await post("/admin/api/sync", {connector: b.dataset.connector});
        const body = await r.json();
        document.getElementById("admin-status").textContent =
          r.ok ? "Sync queued." : (body.error || "The sync was not queued.");
      });
    }
  }
})();
