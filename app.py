"""nada's Gradio app: Adapt, Generate and Invert tabs. Layout and wiring only; the handlers live in ``nada.service``.

``python app.py`` serves on ``GRADIO_SERVER_NAME:GRADIO_SERVER_PORT`` (default 127.0.0.1:7860). ``NADA_TINY=1`` runs
every model as a tiny random stand-in (offline demos, CI). Importing this module loads no model.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from nada.zerogpu import gpu_mode, import_spaces_first

import_spaces_first()  # ZeroGPU: `spaces` must be imported before torch touches CUDA (the imports below)

import gradio as gr  # noqa: E402

from nada import service  # noqa: E402
from nada.limits import MAX_LR  # noqa: E402
from nada.model_store import DEFAULT_CLIPS, ModelStore  # noqa: E402
from nada.runtime import configure_torch, tune_allocator  # noqa: E402
from nada.sessions import SessionStyles, TrainingRuns  # noqa: E402
from nada.train import RECIPES, AdaptConfig  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "examples"
EXAMPLE_PHOTOS = ["astronaut.jpg"]
EXAMPLE_PROMPTS = [["Photo", "Witcher"], ["Photo", "Pixar character"], ["Photo", "Sketch"], ["Human", "Werewolf"],
                   ["Photo", "Modigliani painting"]]
SESSION_TTL_S = 6 * 3600  # a browser session's styles are dropped after this long without use
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web-font download (works offline)


def env_flag(name: str) -> bool:
    """True when the environment variable is set to 1/true/yes/on."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


# ----------------------------------------------------------------------------------------------------- tabs
def show_notice(store: ModelStore, tab: str) -> None:
    """The tab's notice (tiny models, missing weights), as Markdown at the top, when there is one."""
    notice = service.tab_notice(store, tab)
    if notice:
        gr.Markdown(notice)


def adapt_tab(store: ModelStore) -> SimpleNamespace:
    """Layout of the Adapt tab: prompts, settings, Train/Stop, live preview, losses and probed layers."""
    ui = SimpleNamespace()
    show_notice(store, "adapt")
    n_rows = store.generator_rows(store.default_source())
    with gr.Row():
        ui.source = gr.Dropdown(store.source_choices(), value=store.default_source(), label="Source generator")
        ui.source_text = gr.Textbox("Photo", label="Source text", info="what the source generator shows")
        ui.target_text = gr.Textbox("", label="Target text", placeholder="e.g. Witcher",
                                    info="the domain to move to")
    gr.Examples(EXAMPLE_PROMPTS, [ui.source_text, ui.target_text], label="Prompt ideas")
    with gr.Accordion("Target pictures (optional): adapt towards a style shown instead of named", open=False):
        with gr.Row():
            ui.target_pictures = gr.File(file_count="multiple", file_types=["image"], label="1 to 16 pictures",
                                         elem_id="target-pictures")
            ui.target_thumbnails = gr.Gallery(label="Target pictures", columns=4, height=160, interactive=False)
        gr.Markdown("With pictures the target text is optional; with both, the text and picture directions are "
                    "averaged. The style records the pictures' hashes, not the pictures.")
    paper = AdaptConfig.from_recipe("paper")
    ui.recipe = gr.Radio([(r.description, name) for name, r in RECIPES.items()], value="paper", label="Recipe")
    steps = 8 if store.tiny else service.ZERO_GPU_DEFAULT_STEPS if gpu_mode() == "zero" else paper.iterations
    # A number, not a slider: a slider's box silently clamps a typed 5000 to its maximum; service.check_adapt
    # refuses it with a message on the field instead.
    ui.iterations = gr.Number(steps, step=1, label="Training steps", info=f"1 to {service.max_steps(store)}")
    with gr.Accordion("Advanced settings", open=False):
        with gr.Row():
            ui.layers_k = gr.Slider(0, n_rows, value=0, step=1, label="W+ rows trained per step",
                                    info=f"0 = the recipe's (every row, or 2/3 of the {n_rows} for shape)")
            ui.probe = gr.Checkbox(True, label="Choose the rows by probing",
                                   info="off: the constant input and every convolution train")
            ui.clip_names = gr.CheckboxGroup(list(DEFAULT_CLIPS), value=list(paper.clip_models), label="CLIP models",
                                             info="tiny mode uses one tiny CLIP" if store.tiny else "B/16 is slower")
            ui.mixing = gr.Slider(0, 1, value=paper.mixing, step=0.05, label="Style mixing",
                                  info="chance per step of crossing two latents (shape recipe: 0.9)")
        with gr.Row():
            ui.lambda_direction = gr.Slider(0, 2, value=1.0, step=0.05, label="Directional loss weight")
            ui.lambda_global = gr.Slider(0, 2, value=0.0, step=0.05, label="Global loss weight")
            ui.lambda_id = gr.Slider(0, 2, value=0.0, step=0.05, label="Identity loss weight (faces)")
            ui.lambda_l2 = gr.Slider(0, 2, value=0.0, step=0.05, label="L2 loss weight")
        with gr.Row():
            # No precision/minimum/maximum on typed numbers: Gradio would round 1.5 to 2 or refuse -1 with a bare
            # error before nada's checks (service.check_adapt), which name the field and its range instead.
            ui.seed = gr.Number(0, step=1, label="Seed")
            ui.lr = gr.Number(0.002, label="Learning rate", info=f"above 0, at most {MAX_LR:g}")
            ui.batch_size = gr.Slider(1, service.MAX_BATCH, value=2, step=1, label="Batch size")
    with gr.Row():
        ui.train = gr.Button("Train", variant="primary")
        ui.stop = gr.Button("Stop", variant="stop")
    ui.cost = gr.Markdown(service.run_cost(steps, False, list(paper.clip_models)))
    ui.status = gr.Markdown("Press Train to start. Previews: source row above, adapted row below.",
                            elem_id="adapt-status")
    ui.preview = gr.Image(label="Preview (fixed seeds)", type="pil", interactive=False, format="png")
    ui.metrics = gr.Markdown()  # the paper's figures, when a run ends
    with gr.Row():
        ui.losses = gr.LinePlot(x="step", y="loss", color="term", label="Losses", height=260)
        ui.layers = gr.BarPlot(x="row", y="score", color="trains", label="Probed W+ rows", height=260,
                               sort=[f"w{i}" for i in range(n_rows)])
    ui.style_file = gr.File(label="Trained style (.safetensors)", interactive=False)
    return ui


def generate_tab(store: ModelStore) -> SimpleNamespace:
    """Layout of the Generate tab: style, seed, truncation, strength; source and styled images side by side."""
    ui = SimpleNamespace()
    show_notice(store, "generate")
    with gr.Row(equal_height=True):
        ui.style = gr.Dropdown(service.style_choices(store, None), value=service.default_style(store), label="Style",
                               info="trained in this session, uploaded, or published", scale=4,
                               allow_custom_value=True)  # a stale choice reaches service.check_generate's message
        ui.file = gr.UploadButton("Upload a style file (.safetensors or StyleGAN-NADA .pt)",
                                    file_types=list(service.STYLE_SUFFIXES), scale=1)
    with gr.Row():
        ui.seed = gr.Number(0, step=1, label="Seed", scale=2)  # checked by service.check_generate, never rounded
        ui.dice = gr.Button("Random seed", scale=1)
        ui.truncation = gr.Slider(0, 1, value=0.7, step=0.01, label="Truncation", scale=2)
        ui.n_images = gr.Slider(1, service.MAX_IMAGES, value=4, step=1, label="Images", scale=2)
        ui.strength = gr.Slider(0, 1, value=1.0, step=0.01, label="Style strength (0 = source)", scale=2)
    with gr.Row():
        ui.run = gr.Button("Generate", variant="primary", scale=3)
        ui.make_video = gr.Button("Video: walk through the seeds, the style fading in", scale=2)
    with gr.Row(equal_height=True):
        ui.source_gallery = gr.Gallery(label="Source generator", columns=2, object_fit="contain", height=640,
                                       format="png")
        ui.styled_gallery = gr.Gallery(label="Styled", columns=2, object_fit="contain", height=640, format="png")
    ui.video = gr.Video(label="Video (MP4)", interactive=False, elem_id="generate-video")
    ui.files = gr.File(label="Downloads: images (zip) and the style file", file_count="multiple", interactive=False)
    ui.info = gr.Markdown("Press Generate: the same seeds from the source generator and in the style, side by side.")
    return ui


def invert_tab(store: ModelStore) -> SimpleNamespace:
    """Layout of the Invert tab: a photo in, its aligned face, reconstruction and styled versions out."""
    ui = SimpleNamespace()
    show_notice(store, "invert")
    choices = service.invert_choices(store, None)
    with gr.Row():
        with gr.Column():
            # The file reaches the handler undecoded: nada's image loader explains a bad file, Gradio's would not.
            ui.image = service.photo_input(sources=["upload", "webcam", "clipboard"], label="Photo with a face",
                                           elem_id="invert-photo")
            gr.Examples([[str(EXAMPLES / p)] for p in EXAMPLE_PHOTOS if (EXAMPLES / p).is_file()], [ui.image],
                        label="Example photos (public domain)")
        with gr.Column():
            ui.styles = gr.Dropdown(choices, value=[choices[0][1]] if store.tiny and choices else [],
                                    multiselect=True, label="Styles", allow_custom_value=True)
            ui.strength = gr.Slider(0, 1, value=1.0, step=0.01, label="Style strength")
            ui.run = gr.Button("Invert", variant="primary")
            ui.status = gr.Markdown("The face is found and aligned, inverted with e4e, then shown in each style.",
                                    elem_id="invert-status")
    with gr.Row():
        ui.aligned = gr.Image(label="Aligned face", interactive=False, format="png", elem_id="invert-aligned")
        ui.reconstruction = gr.Image(label="Reconstruction (e4e)", interactive=False, format="png")
    ui.gallery = gr.Gallery(label="In each style", columns=4, object_fit="contain", height=320, format="png")
    return ui


# --------------------------------------------------------------------------------------------------- page
def build_demo(tiny: bool | None = None, store: ModelStore | None = None, runs: TrainingRuns | None = None
               ) -> gr.Blocks:
    """The page. ``tiny`` (default: ``NADA_TINY``) uses tiny random models; ``store`` and ``runs`` may be shared."""
    store = store or ModelStore(tiny=env_flag("NADA_TINY") if tiny is None else tiny)
    runs = runs or TrainingRuns()
    with gr.Blocks(title="nada · StyleGAN-NADA", delete_cache=(3600, 7200)) as demo:
        gr.Markdown(service.header_markdown(store))
        session = gr.State(SessionStyles(), time_to_live=SESSION_TTL_S, delete_callback=SessionStyles.cleanup)
        with gr.Tabs():
            with gr.Tab("Adapt"):
                ad = adapt_tab(store)
            with gr.Tab("Generate"):
                ge = generate_tab(store)
            with gr.Tab("Invert"):
                inv = invert_tab(store)

        # Handlers are wired by name: their parameters and the fields of their Outputs records name components.
        # Errors never paint other components: `check` validates the inputs before an event runs (the message shows
        # on the input, nothing else changes), and progress and a later failure show on the tab's own status line
        # (`progress_on`), never on its earlier results or on another tab's style pickers.
        shared = {"session": session, "generate_style": ge.style, "invert_styles": inv.styles}
        ad_names, ge_names, inv_names = ({**vars(tab), **shared} for tab in (ad, ge, inv))
        gpu = service.GpuCalls.wrapped(store)  # the GPU halves, wrapped once for ZeroGPU / NADA_FORK_GPU
        service.wire(ad.train.click, service.bind(service.adapt_stream, store, runs, gpu=gpu), ad_names,
                     service.AdaptOutputs, check=service.bind(service.check_adapt, store), progress_on=["status"],
                     api_name="adapt", concurrency_limit=1, concurrency_id="train")
        for control in (ad.iterations, ad.probe, ad.clip_names, ad.layers_k, ad.recipe):
            service.wire(control.change, service.run_cost, ad_names, "cost", api_name=False, queue=False)
        service.wire(ad.target_pictures.change, service.picture_thumbnails, ad_names, "target_thumbnails",
                     api_name=False)
        service.wire(ad.recipe.change, service.recipe_settings, ad_names, service.RecipeOutputs, api_name=False,
                     queue=False)
        service.wire(ad.stop.click, service.bind(service.stop_training, runs), ad_names, "status", api_name="stop",
                     concurrency_limit=None)
        service.wire(ge.dice.click, service.random_seed, ge_names, "seed", api_name="random_seed",
                     concurrency_limit=None)
        service.wire(ge.file.upload, service.bind(service.upload_style, store, gpu=gpu), ge_names,
                     service.UploadOutputs, api_name="upload_style", show_progress="hidden")  # a failure: a toast
        service.wire(ge.run.click, service.bind(service.generate, store, gpu=gpu), ge_names, service.GenerateOutputs,
                     check=service.bind(service.check_generate, store), progress_on=["info"], api_name="generate",
                     concurrency_limit=2)
        service.wire(ge.make_video.click, service.bind(service.make_video, store, gpu=gpu), ge_names, "video",
                     check=service.bind(service.check_generate, store), progress_on=["info"], api_name="video",
                     concurrency_limit=1)
        service.wire(inv.run.click, service.bind(service.invert_photo, store, gpu=gpu), inv_names,
                     service.InvertOutputs, check=service.bind(service.check_invert, store), progress_on=["status"],
                     api_name="invert", concurrency_limit=1)
    demo.queue(max_size=64)
    return demo


def launch_kwargs() -> dict:
    """Settings ``launch()`` takes in gradio 6 (theme, upload cap, example folder), shared with the tests."""
    return {"theme": gr.themes.Soft(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"]),
            "max_file_size": f"{service.MAX_STYLE_FILE_MB}mb", "allowed_paths": [str(EXAMPLES)]}


def main() -> None:
    """Serve the app on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860)."""
    tune_allocator()  # reuse large blocks instead of page-faulting fresh ones (see nada.runtime)
    configure_torch()  # TF32 off unless NADA_TF32=1, cuDNN autotuning
    store = ModelStore(tiny=env_flag("NADA_TINY"))
    if env_flag("NADA_PRELOAD") or gpu_mode() == "zero":
        for line in store.preload():  # ZeroGPU: models must exist before the first GPU call
            print(f"warning: not preloaded: {line}")
    build_demo(store=store).launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                                   server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), **launch_kwargs())


if __name__ == "__main__":
    main()
