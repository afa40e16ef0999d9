"""nada's Gradio app. Layout and wiring only; the work lives in the ``nada`` library."""

from __future__ import annotations

import gradio as gr


def build_demo() -> gr.Blocks:
    """The page (placeholder until the app issue lands: tabs Adapt, Generate, Invert)."""
    with gr.Blocks(title="nada") as demo:
        gr.Markdown("# nada\nText-driven domain adaptation of StyleGAN2 (StyleGAN-NADA). The app is being built.")
    return demo


if __name__ == "__main__":
    build_demo().launch()
