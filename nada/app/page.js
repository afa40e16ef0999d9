// nada's page script (nada.app.page.page_head puts it in the page's <head>).

// Every picture gets a text alternative: Gradio leaves some without one (a gallery's preview strip, the example
// photos); they take their caption (title), the label of the block they are in, or say that they are an example.
(() => {
  const describe = () => document.querySelectorAll("img:not([alt]), img[alt='']").forEach((img) => {
    const block = img.closest("[id]");
    const label = block && block.querySelector("[data-testid='block-label']");
    const example = img.closest(".gallery-item") && "Example photo: click to use it";
    const text = img.getAttribute("title") || (label && label.textContent.trim()) || example;
    if (text) img.setAttribute("alt", text);
  });
  new MutationObserver(describe).observe(document.documentElement,
    {subtree: true, childList: true, attributes: true, attributeFilter: ["src", "alt"]});
})();

// A slider moved with the keys (arrows, Page Up/Down, Home, End) or typed into its box (Enter) is released like a
// drag: Gradio's slider fires `release` on pointerup (a mouse or a finger let go) and when its box loses focus, never
// after keys, so once the keys have stopped for SETTLE_MS the script sends the slider one pointerup (the live
// re-render, nada.app.wiring.wire_live, runs once).
(() => {
  const SETTLE_MS = 300;
  const keys = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End",
                        "Enter"]);
  const timers = new WeakMap();
  document.addEventListener("keyup", (e) => {
    const el = e.target;
    if (!(el instanceof HTMLInputElement) || !keys.has(e.key)) return;
    if (el.type !== "range" && el.dataset.testid !== "number-input") return;  // a slider's bar or its number box
    clearTimeout(timers.get(el));
    timers.set(el, setTimeout(() => el.dispatchEvent(new PointerEvent("pointerup", {bubbles: true})), SETTLE_MS));
  }, true);
})();
