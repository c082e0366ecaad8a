// Building the page from data: text always goes through textContent, never markup, because
// file names (and every header value) are data a user controls.

export function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function byId(id) {
  return document.getElementById(id);
}

let messageTimer = null;

export function showError(err) {
  const box = byId("message");
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
  clearTimeout(messageTimer);
}

export function clearError() {
  const box = byId("message");
  box.hidden = true;
  box.textContent = "";
}
