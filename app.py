"""nada's Gradio app: Adapt, Generate and Invert tabs. Layout and wiring only; the handlers are in ``nada.app``, a
module per tab (``adapt_tab``, ``generate_tab`` with its ``mix`` box, ``invert_tab``).

``python app.py`` serves on ``GRADIO_SERVER_NAME:GRADIO_SERVER_PORT`` (default 127.0.0.1:7860). ``NADA_TINY=1`` runs
every model as a tiny random stand-in (offline demos, CI). ``NADA_ZOO_DIR=<folder>`` serves a zoo folder (``nada zoo
PROMPTS --out <folder>``): its finished styles join the style pickers and the first screen's gallery, and its contact
sheet is shown in the Generate tab. ``NADA_HYPERNET=<file>`` names a hypernetwork (``nada hyper train``): Adapt gains
an Instant button for the generator it was trained for. Importing this module loads no model.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from nada.app.zerogpu import gpu_mode, import_spaces_first

import_spaces_first()  # ZeroGPU: `spaces` must be imported before torch touches CUDA (the imports below)

import gradio as gr  # noqa: E402

from nada.app import adapt_tab, generate_tab, instant, invert_tab, mix, own_models, zoo_styles  # noqa: E402
from nada.app.page import header_markdown, page_css, page_head, photo_input, tab_notice  # noqa: E402
from nada.app.sessions import BrowserSessions, SessionStyles  # noqa: E402
from nada.app.status_line import failures_on_status, refusal  # noqa: E402
from nada.app.style_menus import RestoreOutputs, invert_choices, restore_session, style_choices  # noqa: E402
from nada.app.thumbnails import StyleThumbnails  # noqa: E402
from nada.app.training_queue import TrainingRuns  # noqa: E402
from nada.app.wiring import bind, wire, wire_live  # noqa: E402
from nada.edits import MAX_STRENGTH as MAX_EDIT_STRENGTH  # noqa: E402
from nada.limits import MAX_LR  # noqa: E402
from nada.model_store import DEFAULT_CLIPS, ModelStore  # noqa: E402
from nada.runtime import configure_torch, env_flag, tune_allocator  # noqa: E402
from nada.train import RECIPES, AdaptConfig  # noqa: E402
from nada.zoo.gallery import ZooGallery  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "examples"
EXAMPLE_PHOTOS = ["astronaut.jpg"]
EXAMPLE_PROMPTS = [["Photo", "Witcher"], ["Photo", "Pixar character"], ["Photo", "Sketch"], ["Human", "Werewolf"],
                   ["Photo", "Modigliani painting"]]
SESSION_TTL_S = 6 * 3600  # a browser session's styles are dropped after this long without use
MAX_WAITING = 8  # training runs that may wait in line behind the running one
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web-font download (works offline)


# ----------------------------------------------------------------------------------------------------- tabs
def show_notice(store: ModelStore, tab: str) -> None:
    """The tab's notice (tiny models, missing weights), as Markdown at the top, when there is one."""
    notice = tab_notice(store, tab)
    if notice:
        gr.Markdown(notice)


def own_generator_button(elem_id: str) -> gr.UploadButton:
    """"Your own generator": an NVIDIA pickle or a rosinality .pt becomes a source of this browser session
    (nada.app.own_models checks it first)."""
    return gr.UploadButton(f"Your own generator (.pkl or .pt, up to {own_models.MAX_GENERATOR_FILE_MB} MB)",
                           size="sm", file_types=list(own_models.GENERATOR_SUFFIXES), min_width=140, elem_id=elem_id)


def adapt_layout(store: ModelStore, offer: instant.HypernetOffer | None = None) -> SimpleNamespace:
    """Layout of the Adapt tab: prompts, settings, Train/Stop (and Instant with Refine where a hypernetwork is
    offered), live preview, losses and probed layers."""
    ui = SimpleNamespace()
    show_notice(store, "adapt")
    n_rows = store.generator_rows(store.default_source())
    with gr.Row():  # min_width: on a phone each takes the whole width instead of squeezing its text
        with gr.Column(min_width=260):
            ui.source = gr.Dropdown(store.source_choices(), value=store.default_source(), label="Source generator",
                                    elem_id="adapt-source")
            ui.own_file = own_generator_button("adapt-own-file")
        ui.source_text = gr.Textbox("Photo", label="Source text", info="what the source generator shows",
                                    min_width=260)
        ui.target_text = gr.Textbox("", label="Target text", placeholder="e.g. Witcher", min_width=260,
                                    info="the domain to move to; Enter starts training", elem_id="target-text")
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
    ui.recipe_note = gr.Markdown(adapt_tab.RECIPE_HINT, elem_id="adapt-recipe-note")  # what a picked recipe set
    steps = 8 if store.tiny else adapt_tab.ZERO_GPU_DEFAULT_STEPS if gpu_mode() == "zero" else paper.iterations
    # A number, not a slider: a slider's box silently clamps a typed 5000 to its maximum; adapt_tab.check_adapt
    # refuses it with a message on the field instead.
    ui.iterations = gr.Number(steps, step=1, label="Training steps", info=f"1 to {adapt_tab.max_steps(store)}")
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
            ui.lambda_indomain = gr.Slider(0, adapt_tab.MAX_INDOMAIN_WEIGHT, value=paper.lambda_indomain, step=0.1,
                                           label="Keep variety (in-domain loss weight)",
                                           info="keeps the samples as different from each other as they were; "
                                                "needs a batch of 2 or more (Keep variety recipe: "
                                                f"{AdaptConfig.from_recipe('diverse').lambda_indomain:g})")
        with gr.Row():
            # No precision/minimum/maximum on typed numbers: Gradio would round 1.5 to 2 or refuse -1 with a bare
            # error before nada's checks (adapt_tab.check_adapt), which name the field and its range instead.
            ui.seed = gr.Number(0, step=1, label="Seed")
            ui.lr = gr.Number(0.002, label="Learning rate", info=f"above 0, at most {MAX_LR:g}")
            ui.batch_size = gr.Slider(1, adapt_tab.MAX_BATCH, value=2, step=1, label="Batch size")
    with gr.Row():
        ui.train = gr.Button("Train", variant="primary", elem_id="adapt-train")
        ui.stop = gr.Button("Stop", variant="stop", elem_id="adapt-stop")
        if offer is not None:  # a style in one pass of the hypernetwork (nada.app.instant), then trained further
            ui.instant = gr.Button("Instant (no training, about a second)", elem_id="adapt-instant",
                                   visible=instant.shows(offer, store.default_source()))
            ui.refine = gr.Button("Refine by training (from the instant style)", visible=False,
                                  elem_id="adapt-refine")
            ui.instant_start = gr.State("")  # the session name of the last instant style
    ui.cost = gr.Markdown(adapt_tab.run_cost(steps, False, list(paper.clip_models)))
    ui.status = gr.Markdown("Press Train to start. Previews: source row above, adapted row below.",
                            elem_id="adapt-status")
    gr.Markdown("**Preview** (the same seeds throughout): source row above, adapted row below.")
    # The label stays for screen readers and the API but is not drawn: it would cover the top left image.
    ui.preview = gr.Image(label="Preview (fixed seeds)", show_label=False, type="pil", interactive=False,
                          format="png", elem_id="adapt-preview",
                          alt_text="Training preview: source images in the top row, the adapted ones below")
    ui.metrics = gr.Markdown(elem_id="adapt-metrics")  # a run's figures (training CLIPs, said so), when it ends
    with gr.Row():  # side by side on a desktop, one under the other on a phone
        ui.losses = gr.LinePlot(x="step", y="loss", color="term", label="Losses", height=300, min_width=340,
                                x_title="step", y_title="loss", color_title="term", elem_id="adapt-losses")
        with gr.Column(min_width=340):  # the rows chart, or (no probe) a line saying that every row trains
            ui.layers = gr.BarPlot(x="row", y="score", color="trains", label="Probed W+ rows", height=300,
                                   sort=[f"w{i}" for i in range(n_rows)], x_title="W+ row", y_title="probe score",
                                   color_title="this step", color_map={"trained": "#16a34a", "frozen": "#9ca3af"},
                                   elem_id="adapt-layers")
            ui.rows_note = gr.Markdown("", elem_id="adapt-rows-note")
    ui.style_file = gr.File(label="Trained style (.safetensors)", interactive=False, height=110,
                            elem_id="adapt-style-file")
    return ui


def generate_layout(store: ModelStore, zoo: ZooGallery | None = None) -> SimpleNamespace:
    """Layout of the Generate tab: the source and styled pictures beside their controls (style, seed, truncation,
    strength, Generate and its status line), inside the first screen of a desktop; on a phone the pictures come first,
    then their controls. Below: the published styles' thumbnails (and a served zoo's, with its contact sheet), Mix
    styles, the video and the downloads."""
    ui = SimpleNamespace()
    show_notice(store, "generate")
    d = generate_tab.GENERATE_DEFAULTS
    with gr.Row(elem_id="generate-main"):  # pictures left, controls right; one under the other on a phone
        with gr.Column(scale=3, min_width=320, elem_id="generate-pictures"):
            with gr.Row(equal_height=True):  # side by side; one under the other on a phone
                ui.source_gallery = gr.Gallery(label="Source generator", columns=2, object_fit="contain",
                                               height="auto", format="png", min_width=300, elem_id="source-gallery")
                ui.styled_gallery = gr.Gallery(label="Styled", columns=2, object_fit="contain", height="auto",
                                               format="png", min_width=300, elem_id="styled-gallery")
        with gr.Column(scale=2, min_width=300, elem_id="generate-controls"):
            where = "published or in the zoo" if zoo else "or published"
            ui.style = gr.Dropdown(style_choices(store, None), value=generate_tab.default_style(store), label="Style",
                                   info=f"trained here, uploaded, {where}; "
                                        "in brackets: the generator it is for",
                                   allow_custom_value=True,  # a stale choice reaches check_generate's message
                                   elem_id="generate-style")
            with gr.Row(equal_height=True):
                ui.seed = gr.Number(d.seed, step=1, label="Seed", scale=2, min_width=120,  # checked, never rounded
                                    elem_id="generate-seed")  # (generate_tab.check_generate)
                ui.dice = gr.Button("Random seed", size="sm", scale=1, min_width=100, elem_id="generate-dice")
            with gr.Row():
                ui.truncation = gr.Slider(0, 1, value=d.truncation, step=0.01, label="Truncation", min_width=160,
                                          elem_id="generate-truncation")
                ui.n_images = gr.Slider(1, generate_tab.MAX_IMAGES, value=d.n_images, step=1, label="Images",
                                        min_width=160, elem_id="generate-images")
            ui.strength = gr.Slider(0, 1, value=d.strength, step=0.01, label="Style strength (0 = source)",
                                    elem_id="generate-strength")
            ui.run = gr.Button("Generate", variant="primary", elem_id="generate-run")
            # The status line, right under the button that starts the work: what is shown, then "Done in ...".
            ui.info = gr.Markdown("The same seeds from the source generator and in the style, side by side: they "
                                  "re-render when a control is released (Generate renders again as it is).",
                                  elem_id="generate-info")
            with gr.Row():
                ui.make_video = gr.Button("Video: walk through the seeds, the style fading in", size="sm",
                                          min_width=140, elem_id="generate-make-video")
                ui.file = gr.UploadButton("Upload a style file (.safetensors or StyleGAN-NADA .pt)", size="sm",
                                          file_types=list(generate_tab.STYLE_SUFFIXES), min_width=140)
                ui.own_file = own_generator_button("generate-own-file")
    # Filled as the page opens (generate_tab.published_gallery); a click picks the style above.
    shown = "Published styles" if zoo is None else f"Published styles and the zoo's {len(zoo.styles)}"
    ui.published = gr.Gallery(label=f"{shown}: click one to use it", columns=8, height=None,
                              allow_preview=False, object_fit="cover", format="png", elem_id="published-styles")
    ui.published_names = gr.State([])  # the style name of each thumbnail, in the gallery's order
    if zoo is not None and zoo.sheet is not None:  # the zoo's contact sheet (nada.app.zoo_styles)
        with gr.Accordion(zoo_styles.sheet_title(zoo), open=False, elem_id="zoo-sheet-box"):
            ui.zoo_sheet = gr.Image(str(zoo.sheet), label="Zoo sheet", show_label=False, interactive=False,
                                    format="png", elem_id="zoo-sheet",
                                    alt_text="The zoo's contact sheet: a row per style, the same seeds in each column")
    mix_layout(store, ui)
    with gr.Row(equal_height=True):  # the video at most ~600 px tall (page.css), the downloads beside it
        ui.video = gr.Video(label="Video (MP4)", interactive=False, elem_id="generate-video", scale=2,
                            min_width=300)
        ui.files = gr.File(label="Downloads: images (zip) and the style file", file_count="multiple",
                           interactive=False, height=150, scale=1, min_width=240, elem_id="generate-files")
    return ui


def mix_layout(store: ModelStore, ui: SimpleNamespace) -> None:
    """The Generate tab's "Mix styles" (nada.app.mix): up to four styles with weights, saved as a new style, and a
    video through the picked styles; its components join the tab's ``ui``. The rows start with styles that mix
    (mix.opening_rows), or one style and the reason (mix.opening_note)."""
    low, high = mix.MIX_WEIGHT_RANGE
    choices = mix.row_choices(store, None)
    with gr.Accordion("Mix styles: blend up to four styles into a new one", open=False, elem_id="mix-styles") as box:
        gr.Markdown("Each weight moves from the source towards its style (1 = the full style, below 0 = away from "
                    "it); the pictures above show the mix when a weight is released. Only styles of one generator "
                    "(named in brackets) mix. **Mix and save** keeps it as a style of this session (pick it above or "
                    "download it; Invert offers it when its styles are of "
                    f"'{store.invert_source()}', the generator photos are inverted into). The video goes through "
                    "the picked styles in row order.")
        note = mix.opening_note(store)
        if note:
            gr.Markdown(note, elem_id="mix-note")
        for i, (style, weight) in enumerate(mix.opening_rows(store), 1):
            with gr.Row(equal_height=True):
                setattr(ui, f"mix_style_{i}", gr.Dropdown(choices, value=style, label=f"Style {i}",
                                                          scale=3, min_width=240, allow_custom_value=True,
                                                          elem_id=f"mix-style-{i}"))
                setattr(ui, f"mix_weight_{i}", gr.Slider(low, high, value=weight, step=0.05,
                                                         label=f"Weight {i}", scale=2, min_width=200,
                                                         elem_id=f"mix-weight-{i}"))
        with gr.Row(equal_height=True):
            ui.mix_name = gr.Textbox("", label="Name of the mix", placeholder="empty: named after its styles",
                                     scale=2, min_width=200)
            with gr.Column(scale=1, min_width=200):  # its own column: on a phone it goes under the name, whole
                ui.mix_grid = gr.Checkbox(False, label="Video: side by side instead of morphing")
        with gr.Row():  # side by side on a phone too, so that their status line is right under both
            ui.mix_run = gr.Button("Mix and save", variant="primary", min_width=120, elem_id="mix-run")
            ui.mix_make_video = gr.Button("Video through the picked styles", min_width=120, elem_id="mix-video")
        ui.mix_status = gr.Markdown("", elem_id="mix-status")  # under the buttons: what was saved, or why not
        ui.mix_file = gr.File(label="Mixed style (.safetensors)", interactive=False, height=110, elem_id="mix-file")
    ui.mix_box = box


def invert_layout(store: ModelStore) -> SimpleNamespace:
    """Layout of the Invert tab: a photo in, its aligned face, reconstruction and styled versions out."""
    ui = SimpleNamespace()
    show_notice(store, "invert")
    choices = invert_choices(store, None)
    with gr.Row():
        with gr.Column():
            # The file reaches the handler undecoded: nada's image loader explains a bad file, Gradio's would not.
            ui.image = photo_input(sources=["upload", "webcam", "clipboard"], label="Photo with a face",
                                           elem_id="invert-photo")
            gr.Examples([[str(EXAMPLES / p)] for p in EXAMPLE_PHOTOS if (EXAMPLES / p).is_file()], [ui.image],
                        label="Example photos (public domain)")
        with gr.Column():
            ui.styles = gr.Dropdown(choices, value=[choices[0][1]] if store.tiny and choices else [],
                                    multiselect=True, label="Styles", allow_custom_value=True,
                                    info=invert_tab.styles_info(store), elem_id="invert-styles")
            # Which generators take photos (e4e's alone), and why the one picked in Adapt or Generate does not.
            ui.invert_scope = gr.Markdown(own_models.invert_scope(store, None), elem_id="invert-scope")
            ui.strength = gr.Slider(0, 1, value=1.0, step=0.01, label="Style strength")
            with gr.Row(equal_height=True):  # the Edit row: learned once per edit with CLIP (nada.edits), then instant
                ui.edit = gr.Dropdown(invert_tab.edit_choices(), value=invert_tab.NO_EDIT, allow_custom_value=True,
                                      label="Edit", info="a preset, or type what the face should become "
                                                         "(e.g. face with freckles)", scale=2, min_width=200,
                                      elem_id="invert-edit")
                ui.edit_strength = gr.Slider(-MAX_EDIT_STRENGTH, MAX_EDIT_STRENGTH, value=1.5,
                                             step=0.1, label="Edit strength", info="0 = none, below 0 = the other way",
                                             scale=1, min_width=200, elem_id="invert-edit-strength")
            # Right under the Edit row, its whole width (its line says each preset's rows): which W+ rows the edit
            # may change (nada.nets.rows); each choice is learned once and cached.
            ui.edit_rows = gr.Dropdown(list(invert_tab.EDIT_ROWS), value=invert_tab.AS_PRESET, allow_custom_value=True,
                                       label="Edit rows", info=invert_tab.edit_rows_info(), elem_id="invert-edit-rows")
            with gr.Row():
                ui.run = gr.Button("Invert", variant="primary", scale=2, elem_id="invert-run")
                ui.make_video = gr.Button("Video: the face through each style, the edit going back and forth",
                                          scale=2, elem_id="invert-make-video")
            ui.status = gr.Markdown("The face is found and aligned, inverted with e4e, then shown in each style.",
                                    elem_id="invert-status")
    with gr.Row(equal_height=True):  # the aligned face, its reconstruction and each styled result, whole and captioned
        ui.aligned = gr.Image(label="Aligned face", interactive=False, format="png", elem_id="invert-aligned",
                              min_width=200, alt_text="The face found in the photo, aligned")
        ui.reconstruction = gr.Image(label="Reconstruction (e4e)", interactive=False, format="png", min_width=200,
                                     elem_id="invert-reconstruction",
                                     alt_text="The face as the generator redraws it (e4e inversion)")
        ui.gallery = gr.Gallery(label="In each style", columns=2, fit_columns=False, object_fit="contain",
                                height=None, format="png", scale=2, min_width=300, elem_id="invert-gallery")
    with gr.Row(equal_height=True):  # the Video button's clip: MP4 to play, GIF to share (hidden while empty: page.css)
        ui.video = gr.Video(label="Video (MP4)", interactive=False, elem_id="invert-video", min_width=300)
        ui.gif = gr.Image(label="GIF (for sharing)", type="filepath", interactive=False, elem_id="invert-gif",
                          min_width=300, alt_text="The same video as an animated GIF")
    return ui


# --------------------------------------------------------------------------------------------------- page
def build_demo(tiny: bool | None = None, store: ModelStore | None = None, runs: TrainingRuns | None = None,
               sessions: BrowserSessions | None = None, zoo_dir: str | os.PathLike | None = None,
               hypernet: str | os.PathLike | None = None) -> gr.Blocks:
    """The page. ``tiny`` (default: ``NADA_TINY``) uses tiny random models; ``store``, ``runs`` and ``sessions`` may
    be shared. ``zoo_dir`` (default: ``NADA_ZOO_DIR``) names a zoo folder whose finished styles the page offers (a
    folder that cannot be served is said in the server log; the page builds without it). ``hypernet`` (default:
    ``NADA_HYPERNET``) names a hypernetwork file: Adapt offers Instant for the generator it was trained for."""
    store = store or ModelStore(tiny=env_flag("NADA_TINY") if tiny is None else tiny)
    zoo = zoo_styles.serve_zoo(store, zoo_styles.zoo_setting(zoo_dir))
    offer = instant.offer_for(store, hypernet)
    runs = runs or TrainingRuns(max_waiting=MAX_WAITING)
    sessions = sessions or BrowserSessions(ttl_s=SESSION_TTL_S)
    opening = generate_tab.OpeningImages()
    thumbnails = StyleThumbnails.beside_weights(store.tiny)
    with gr.Blocks(title="nada · StyleGAN-NADA", delete_cache=(3600, 7200)) as demo:
        gr.Markdown(header_markdown(store))
        # A page's styles live in `sessions` under an opaque random key the browser keeps (localStorage), so a reload
        # finds them again; `session` holds them for the handlers once the page has loaded (restore_session).
        browser_key = gr.BrowserState("", storage_key="nada-session")
        session = gr.State(SessionStyles(), time_to_live=SESSION_TTL_S, delete_callback=sessions.release)
        # The page opens on Generate: pictures and the controls that change them, the design's first gesture.
        with gr.Tabs(selected="generate"):
            with gr.Tab("Adapt", id="adapt"):
                ad = adapt_layout(store, offer)
            with gr.Tab("Generate", id="generate", elem_id="generate-tab"):
                ge = generate_layout(store, zoo)
            with gr.Tab("Invert", id="invert"):
                inv = invert_layout(store)

        # Handlers are wired by name: their parameters and the fields of their Outputs records name components.
        # Errors never paint other components: `check` validates the inputs before an event runs (the message shows
        # on the input, nothing else changes), and progress and a later failure show on the tab's own status line
        # (`progress_on`), never on its earlier results or on another tab's style pickers.
        shared = {"session": session, "generate_style": ge.style, "invert_styles": inv.styles,
                  "browser_key": browser_key, "adapt_source": ad.source, "invert_scope": inv.invert_scope}
        ad_names, ge_names, inv_names = ({**vars(tab), **shared} for tab in (ad, ge, inv))
        # Each tab's GPU tasks, wrapped once for ZeroGPU / NADA_FORK_GPU (a worker process per call).
        adapt_gpu, generate_gpu = adapt_tab.AdaptGpu.wrapped(store), generate_tab.GenerateGpu.wrapped(store)
        invert_gpu, mix_gpu = invert_tab.InvertGpu.wrapped(store), mix.MixGpu.wrapped(store)

        # As the page opens: this browser's styles, the Generate tab's opening pictures, the published styles.
        wire(demo.load, bind(restore_session, store, sessions), ge_names, RestoreOutputs, api_name=False, queue=False,
             show_progress="hidden")
        wire(demo.load, bind(generate_tab.opening_images, store, opening, gpu=generate_gpu), ge_names,
             generate_tab.OpeningOutputs, api_name=False, progress_on=["source_gallery", "styled_gallery"],
             concurrency_limit=None)
        wire(demo.load, bind(generate_tab.published_gallery, store, thumbnails, gpu=generate_gpu), ge_names,
             generate_tab.PublishedOutputs, api_name=False, progress_on=["published"], concurrency_limit=None)
        wire(ge.published.select, generate_tab.select_published, ge_names, "generate_style", api_name=False,
             queue=False)

        # Train (or Enter in the target text): the run waits in line while another one trains (in words, on the
        # status line); the button says it is running and cannot be pressed twice, and comes back when it ends.
        # A refused value also shows on the status line beside the button (`refusal`: that line alone changes), and
        # a failure while running is written there too (`failures_on_status`).
        for trigger in (ad.train.click, ad.target_text.submit):
            wire(trigger, refusal(bind(adapt_tab.check_adapt, store), adapt_tab.FIELD_PLACES), ad_names, "status",
                 api_name=False, queue=False, show_progress="hidden")  # first: the page stops at a refused event
            run = wire(trigger, failures_on_status(bind(adapt_tab.adapt_stream, store, runs, gpu=adapt_gpu),
                                                   adapt_tab.AdaptOutputs), ad_names,
                       adapt_tab.AdaptOutputs, check=bind(adapt_tab.check_adapt, store), progress_on=["status"],
                       api_name="adapt" if trigger == ad.train.click else False,
                       concurrency_limit=MAX_WAITING + 1, concurrency_id="train")
            wire(run.then, bind(adapt_tab.train_button_state, runs), ad_names, "train", api_name=False, queue=False,
                 show_progress="hidden")
        for control in (ad.iterations, ad.probe, ad.clip_names, ad.layers_k, ad.recipe):
            wire(control.change, adapt_tab.run_cost, ad_names, "cost", api_name=False, queue=False)
        wire(ad.target_pictures.change, adapt_tab.picture_thumbnails, ad_names, "target_thumbnails", api_name=False)
        wire(ad.recipe.change, adapt_tab.recipe_settings, ad_names, adapt_tab.RecipeOutputs, api_name=False,
             queue=False)
        if offer is not None:
            wire_instant(ad, ad_names, store, runs, offer, adapt_gpu)
        wire(ad.stop.click, bind(adapt_tab.stop_training, runs), ad_names, "status", api_name="stop",
             concurrency_limit=None)
        wire(ge.dice.click, generate_tab.random_seed, ge_names, "seed", api_name="random_seed", concurrency_limit=None)
        wire(ge.file.upload, bind(generate_tab.upload_style, store, gpu=generate_gpu), ge_names,
             generate_tab.UploadOutputs, api_name="upload_style", show_progress="hidden")  # a failure: a toast
        # Your own generator (Adapt or Generate): checked, then a source of this browser session only; picked in the
        # tab it came from. Invert's line says which generators take photos whenever a picker changes.
        for tab, names, pick in ((ad, ad_names, "adapt"), (ge, ge_names, "generate")):
            wire(tab.own_file.upload, bind(own_models.upload_generator, store, pick=pick), names,
                 own_models.OwnOutputs, api_name="upload_generator" if pick == "adapt" else False,
                 show_progress="hidden")  # a refusal: a toast naming the file
        for trigger in (ad.source.change, ge.style.change):
            wire(trigger, bind(own_models.invert_scope, store), inv_names, "invert_scope", api_name=False,
                 queue=False, show_progress="hidden")
        # A refused press also says why on the status line beside the button (the input at fault shows it too). Wired
        # before the buttons' own events: the page runs a trigger's events in order and stops at a refused one.
        for button, check, status, refused in (
                (ge.run, generate_tab.check_generate, "info", "Not rendered"),
                (ge.make_video, generate_tab.check_generate, "info", "No video"),
                (ge.mix_run, mix.check_mix, "mix_status", "Not saved"),
                (ge.mix_make_video, mix.check_mix_video, "mix_status", "No video")):
            wire(button.click, refusal(bind(check, store), label=refused), ge_names, status,
                 api_name=False, queue=False, show_progress="hidden")
        # A failure during a run is said on the status line too (the notice and the line's mark show it as well).
        said = failures_on_status
        rendered = said(generate_tab.generate, generate_tab.GenerateOutputs, "info", "Not rendered")
        rendered_live = said(generate_tab.generate_live, generate_tab.GenerateOutputs, "info", "Not rendered")
        saved = said(mix.mix_styles, mix.MixOutputs, "mix_status", "Not saved")
        previewed = said(mix.mix_preview, mix.MixPreviewOutputs, "info", "Not rendered")
        wire(ge.run.click, bind(rendered, store, gpu=generate_gpu), ge_names, generate_tab.GenerateOutputs,
             check=bind(generate_tab.check_generate, store), progress_on=["info"], api_name="generate",
             concurrency_limit=2, concurrency_id="render")
        # Live: a released slider, a new seed (typed or the dice) or a picked style (a thumbnail, an upload, a finished
        # training run) re-renders without Generate; a change made meanwhile waits, and only the newest one runs.
        wire_live([ge.truncation, ge.strength, ge.n_images, ge.seed, ge.style],
                  bind(rendered_live, store, gpu=generate_gpu), ge_names, generate_tab.GenerateOutputs,
                  check=bind(generate_tab.check_generate, store), progress_on=["info"], concurrency_limit=2,
                  concurrency_id="render")
        # Invert's results redrawn from the last inverted photo's kept codes (no new inversion) when a strength is
        # released or another edit or style is picked; an edit not learned yet is not learned there (in words).
        wire_live([inv.strength, inv.edit_strength, inv.edit, inv.edit_rows, inv.styles],
                  failures_on_status(bind(invert_tab.restyle_photo, store, gpu=invert_gpu), invert_tab.RestyleOutputs),
                  inv_names, invert_tab.RestyleOutputs, check=bind(invert_tab.check_restyle, store),
                  progress_on=["status"], concurrency_limit=1)
        wire(ge.make_video.click, bind(generate_tab.make_video, store, gpu=generate_gpu), ge_names, "video",
             check=bind(generate_tab.check_generate, store), progress_on=["info"], api_name="video",
             concurrency_limit=1)
        # A refused photo or edit is said beside the buttons too; wired before the buttons' own events (the page
        # sends a trigger's events in order and stops at one refused by its validator).
        for trigger in (inv.run.click, inv.make_video.click):
            wire(trigger, refusal(bind(invert_tab.check_invert, store)), inv_names, "status", api_name=False,
                 queue=False, show_progress="hidden")
        wire(inv.run.click, failures_on_status(bind(invert_tab.invert_photo, store, gpu=invert_gpu),
                                               invert_tab.InvertOutputs), inv_names, invert_tab.InvertOutputs,
             check=bind(invert_tab.check_invert, store), progress_on=["status"], api_name="invert",
             concurrency_limit=1)
        wire(inv.make_video.click, failures_on_status(bind(invert_tab.invert_video, store, gpu=invert_gpu),
                                                      invert_tab.InvertVideoOutputs), inv_names,
             invert_tab.InvertVideoOutputs, check=bind(invert_tab.check_invert, store), progress_on=["status"],
             api_name="invert_video", concurrency_limit=1)

        # Mix styles (Generate tab): a released weight previews the mix in the tab's pictures (not saved); Mix and
        # save keeps it as a session style and picks it above (whose live event renders it); the rows offer the
        # session's styles whenever the box opens or the tab's style changes (a training run, an upload, a mix).
        wire(ge.mix_run.click, bind(saved, store, gpu=mix_gpu), ge_names, mix.MixOutputs,
             check=bind(mix.check_mix, store), progress_on=["mix_status"], api_name="mix_styles", concurrency_limit=1,
             concurrency_id="mix")
        wire_live([getattr(ge, f"mix_weight_{i}") for i in range(1, mix.MAX_MIX + 1)],
                  bind(previewed, store, gpu=mix_gpu), ge_names, mix.MixPreviewOutputs,
                  check=bind(mix.check_mix_preview, store), progress_on=["info"], concurrency_limit=2,
                  concurrency_id="render")
        wire(ge.mix_make_video.click, bind(mix.mix_video, store, gpu=mix_gpu), ge_names, "video",
             check=bind(mix.check_mix_video, store), progress_on=["video"], api_name="mix_video", concurrency_limit=1)
        for trigger in (ge.mix_box.expand, ge.style.change):
            wire(trigger, bind(mix.refresh_rows, store), ge_names, mix.MixRowsOutputs, api_name=False, queue=False,
                 show_progress="hidden")
    demo.queue(max_size=64)
    return demo


def wire_instant(ad: SimpleNamespace, ad_names: dict, store: ModelStore, runs: TrainingRuns,
                 offer: instant.HypernetOffer, adapt_gpu: adapt_tab.AdaptGpu) -> None:
    """Instant (shown for the generator the hypernetwork was trained for) and Refine, wired as Train is: a refusal
    on the status line beside the buttons, nothing else changed; Refine waits in the training line."""
    wire(ad.source.change, bind(instant.instant_button, offer), ad_names, "instant", api_name=False, queue=False,
         show_progress="hidden")
    check = bind(instant.check_instant, store, offer)
    wire(ad.instant.click, refusal(check, label="No instant style"), ad_names, "status", api_name=False, queue=False,
         show_progress="hidden")
    wire(ad.instant.click, failures_on_status(bind(instant.instant_style, store, offer,
                                                   gpu=instant.InstantGpu.wrapped(store)), instant.InstantOutputs),
         ad_names, instant.InstantOutputs, check=check, progress_on=["status"], api_name="instant",
         concurrency_limit=2)
    refine_check = bind(instant.check_refine, store)
    wire(ad.refine.click, refusal(refine_check, adapt_tab.FIELD_PLACES), ad_names, "status", api_name=False,
         queue=False, show_progress="hidden")
    run = wire(ad.refine.click, failures_on_status(bind(instant.refine_stream, store, runs, gpu=adapt_gpu),
                                                   adapt_tab.AdaptOutputs), ad_names, adapt_tab.AdaptOutputs,
               check=refine_check, progress_on=["status"], api_name="refine", concurrency_limit=MAX_WAITING + 1,
               concurrency_id="train")
    wire(run.then, bind(adapt_tab.train_button_state, runs), ad_names, "train", api_name=False, queue=False,
         show_progress="hidden")


def launch_kwargs() -> dict:
    """Settings ``launch()`` takes in gradio 6 (theme, upload cap, example folder, the page's style and script),
    shared with the tests."""
    return {"theme": gr.themes.Soft(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"]),
            "max_file_size": f"{max(generate_tab.MAX_STYLE_FILE_MB, own_models.MAX_GENERATOR_FILE_MB)}mb",
            "css": page_css(),
            "allowed_paths": [str(EXAMPLES), str(StyleThumbnails.beside_weights(False).directory)],  # and tiny/
            "head": page_head()}


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
