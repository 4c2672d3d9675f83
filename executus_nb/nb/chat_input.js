// Chat input row: a text box, Send (Enter sends) and Cancel for the turn in flight.
// Python owns the state: `busy` (a turn is running: Send is disabled, Cancel shown) and `error`
// (why the last send was refused). This file only forwards what the person typed or clicked.

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function render({ model, el: root }) {
  root.classList.add("executus-chat-controls");
  root.style.cssText = "display:flex;flex-wrap:wrap;gap:6px;width:100%;box-sizing:border-box;align-items:center;margin-top:6px;font-family:system-ui,sans-serif;font-size:13px";
  const input = el("input", "executus-chat-input");
  input.type = "text";
  input.placeholder = model.get("placeholder");
  input.setAttribute("aria-label", "message");
  input.style.cssText = "flex:1 1 320px;min-width:160px;padding:4px 6px;border:1px solid #d0d7de;border-radius:4px";
  const send = el("button", "executus-chat-send", "Send");
  send.type = "button";
  send.style.cssText = "padding:3px 12px;border:1px solid #1a7f37;background:#dafbe1;border-radius:4px;cursor:pointer";
  const cancel = el("button", "executus-chat-cancel", "Cancel");
  cancel.type = "button";
  cancel.style.cssText = "padding:3px 12px;border:1px solid #bf8700;background:#fff8c5;border-radius:4px;cursor:pointer";
  const error = el("span", "executus-chat-error");
  error.style.cssText = "color:#cf222e;flex-basis:100%";
  root.append(input, send, cancel, error);

  function submit() {
    const text = input.value;
    if (model.get("busy") || !text.trim()) return;
    model.send({ type: "send", text });
    input.value = "";
  }

  function sync() {
    const busy = model.get("busy");
    send.disabled = busy;
    send.style.opacity = busy ? "0.5" : "1";
    cancel.style.display = busy ? "" : "none";
    error.textContent = model.get("error");
    root.classList.toggle("executus-chat-busy", busy);
  }

  send.addEventListener("click", submit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  cancel.addEventListener("click", () => model.send({ type: "cancel" }));
  model.on("change:busy", sync);
  model.on("change:error", sync);
  sync();
  return () => {
    model.off("change:busy", sync);
    model.off("change:error", sync);
  };
}

export default { render };
