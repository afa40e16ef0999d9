"""The hypernetwork (nada.hyper) on a stand-in with known answers: a tiny 32 px generator and the colour CLIP
stand-in (a text is the sum of its colour words, an image its mean colour). Trained over "red", "green", "blue" and
"red green", held-out prompts must move the pictures the way their words say; files, resuming, data parallelism
and bad input are checked on short runs."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from nada.hyper import HyperConfig, Hypernet, HypernetMismatchError, text_direction, train_hypernet
from nada.render import seed_latents
from nada.styles import StyleMismatchError, apply_style, load_style, save_style, verify_source

from .helpers import ColourClip, make_tiny_generator

TRAIN = ["red", "green", "blue", "red green"]
HELD_OUT = ["red blue", "green blue"]
CONFIG = HyperConfig(iterations=60, prompts_per_step=4, batch_size=2, lr=1e-2, clip_models=("colour",), hidden=64,
                     mixing=0.0, frozen_rows=(0,), interpolation=0.5, eval_every=30, eval_samples=4,
                     checkpoint_every=0, seed=0)
SHORT = dataclasses.replace(CONFIG, iterations=6, prompts_per_step=3, mixing=0.5, lambda_indomain=0.1,
                            eval_every=0, checkpoint_every=3)


def _clip() -> list[tuple[ColourClip, float]]:
    return [(ColourClip(), 1.0)]


@pytest.fixture(scope="module")
def gen():
    return make_tiny_generator(size=32)


@pytest.fixture(scope="module")
def trained(gen):
    """Every record of one 60-step run (held-out prompts judged by a colour CLIP of another scale)."""
    return list(train_hypernet(gen, _clip(), TRAIN, CONFIG, held_out=HELD_OUT, judge=[(ColourClip(k=5.0), 1.0)],
                               source="tiny32"))


def _colour_change(gen, style) -> list[float]:
    """Mean (red, green, blue) change of 16 fixed samples, styled minus source."""
    w = seed_latents(gen, list(range(16)), 0.7)
    with torch.no_grad():
        base = gen.synthesis(w, noise_mode="const").mean(dim=(0, 2, 3))  # [3]
        styled = apply_style(gen, style).synthesis(w, noise_mode="const").mean(dim=(0, 2, 3))
    return (styled - base).tolist()


def _weights(net: Hypernet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_held_out_prompts_move_the_pictures_the_way_their_words_say(gen, trained):
    net = trained[-1].hypernet
    red, green, blue = _colour_change(gen, net.style(_clip(), "photo", "red blue"))  # never trained
    assert red > 0.1 and blue > 0.1 and green < 0, (red, green, blue)
    red, green, blue = _colour_change(gen, net.style(_clip(), "photo", "green blue"))  # never trained
    assert green > 0.1 and blue > 0.1 and red < 0, (red, green, blue)
    red, green, blue = _colour_change(gen, net.style(_clip(), "photo", "blue"))
    assert blue > 0.5 and blue > 5 * max(red, green), (red, green, blue)


def test_training_records_losses_and_held_out_figures(trained):
    assert [r.step for r in trained] == list(range(1, 61))
    last = trained[-1]
    assert last.done and last.error is None and isinstance(last.hypernet, Hypernet)
    assert last.hypernet.meta["steps"] == 60 and last.hypernet.meta["source"] == "tiny32"
    first = sum(r.losses["direction"] for r in trained[:5]) / 5
    final = sum(r.losses["direction"] for r in trained[-5:]) / 5
    assert final < 0.6 * first, (first, final)
    evaluated = [r for r in trained if r.figures is not None]
    assert [r.step for r in evaluated] == [30, 60]
    figures = last.figures
    assert set(figures["prompts"]) == {"Photo -> red blue", "Photo -> green blue"}
    assert figures["mean"]["s_dir"] > 0.5  # the held-out judge sees the change along each text direction
    assert figures["mean"]["s_dir"] == pytest.approx(
        sum(f["s_dir"] for f in figures["prompts"].values()) / 2)


def test_a_fresh_hypernet_is_nearly_the_source(gen):
    net = Hypernet.for_generator(gen, _clip(), CONFIG)
    offsets = net(text_direction(_clip(), "photo", "red"))
    assert set(offsets) == {f"convs.{i}.conv.style_delta" for i in range(6)}  # row 0 (conv1) frozen, no ToRGB
    assert max(float(v.detach().abs().max()) for v in offsets.values()) < 0.05
    assert max(abs(c) for c in _colour_change(gen, net.style(_clip(), "photo", "red"))) < 0.01


def test_text_direction_is_unit_length_and_weighs_each_model():
    one = text_direction(_clip(), "photo", "red")
    assert torch.allclose(one, torch.tensor([0.5 ** 0.5, 0, 0, -(0.5 ** 0.5)]))
    two = text_direction([(ColourClip(), 3.0), (ColourClip(), 1.0)], "photo", "red")  # [8]
    assert two.shape == (8,) and float(two.norm()) == pytest.approx(1.0)
    assert float(two[:4].norm()) == pytest.approx(0.75 ** 0.5) and float(two[4:].norm()) == pytest.approx(0.5)


def test_style_is_a_compact_style_that_applies_and_saves(gen, trained, tmp_path):
    net = trained[-1].hypernet
    style = net.style(_clip(), "photo", "red blue")
    assert style.kind == "style_delta" and style.meta["hypernet"] is True
    assert style.meta["source"] == "tiny32" and style.meta["target_text"] == "red blue"
    verify_source(style, gen)
    with pytest.raises(StyleMismatchError):
        verify_source(style, make_tiny_generator(seed=1, size=32))
    loaded = load_style(save_style(style, tmp_path / "red_blue.safetensors"))
    w = seed_latents(gen, [0, 1], 0.7)
    with torch.no_grad():
        direct = gen.shared_copy().set_style_offsets(net(text_direction(_clip(), "photo", "red blue")))
        expected = direct.synthesis(w, noise_mode="const")
        assert torch.equal(apply_style(gen, loaded).synthesis(w, noise_mode="const"), expected)


def test_save_and_load_give_the_same_offsets(gen, trained, tmp_path):
    net = trained[-1].hypernet
    path = net.save(tmp_path / "hyper.safetensors")
    back = Hypernet.load(path, generator=gen, clip_names=["colour"])
    assert back.meta == net.meta and back.config == net.config and back.layers == net.layers
    for prompt in ("red", "red blue", "green"):
        a = net.style(_clip(), "photo", prompt).tensors
        b = back.style(_clip(), "photo", prompt).tensors
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_load_refuses_another_generator_other_clip_models_and_other_files(gen, trained, tmp_path):
    path = trained[-1].hypernet.save(tmp_path / "hyper.safetensors")
    with pytest.raises(HypernetMismatchError, match="another generator") as err:
        Hypernet.load(path, generator=make_tiny_generator(seed=1, size=32))
    assert "'hyper.safetensors'" in str(err.value) and str(tmp_path) not in str(err.value)
    with pytest.raises(HypernetMismatchError, match="CLIP models colour, not clip-vit-b32"):
        Hypernet.load(path, clip_names=["clip-vit-b32"])
    style_file = save_style(trained[-1].hypernet.style(_clip(), "photo", "red"), tmp_path / "red.safetensors")
    with pytest.raises(HypernetMismatchError, match="'red.safetensors' is a safetensors file but not a nada hyper"):
        Hypernet.load(style_file)
    with pytest.raises(HypernetMismatchError, match="'missing.safetensors' does not exist"):
        Hypernet.load(tmp_path / "missing.safetensors")
    with pytest.raises(HypernetMismatchError, match="trained with the CLIP models colour"):
        Hypernet.load(path).style(_clip() * 2, "photo", "red")
    with pytest.raises(HypernetMismatchError, match="embed text in 3 numbers; this hypernetwork reads 4"):
        Hypernet.load(path).style([(_ThreeColours(), 1.0)], "photo", "red")


class _ThreeColours(ColourClip):
    """The colour stand-in with 3-number text embeddings (another CLIP model's size)."""

    def encode_text(self, tokens):
        return super().encode_text(tokens)[:, :3]


def test_resume_continues_exactly_as_one_run(gen, tmp_path):
    whole = list(train_hypernet(gen, _clip(), TRAIN, SHORT))
    states = {}
    stop = threading.Event()
    first = []
    for rec in train_hypernet(gen, _clip(), TRAIN, SHORT, stop=stop,
                              checkpoint=lambda state, step: states.setdefault(step, state)):
        first.append(rec)
        if rec.step == 3:
            stop.set()
    assert sorted(states) == [3] and first[-1].done and first[-1].step == 3
    assert all(v.device.type == "cpu" for v in states[3]["hypernet"].values())
    torch.save(states[3], tmp_path / "state.pt")  # a state survives a file (as a Ray checkpoint keeps it)
    rest = list(train_hypernet(gen, _clip(), TRAIN, SHORT, resume=torch.load(tmp_path / "state.pt", weights_only=True)))
    assert [r.step for r in rest] == [4, 5, 6]
    assert [r.losses for r in rest] == [r.losses for r in whole[3:]]
    a, b = _weights(whole[-1].hypernet), _weights(rest[-1].hypernet)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        train_hypernet(gen, _clip(), TRAIN, dataclasses.replace(SHORT, lr=0.5), resume=states[3])
    with pytest.raises(ValueError, match="another prompt list"):
        train_hypernet(gen, _clip(), TRAIN[:3], SHORT, resume=states[3])
    with pytest.raises(HypernetMismatchError, match="another generator"):
        train_hypernet(make_tiny_generator(seed=1, size=32), _clip(), TRAIN, SHORT, resume=states[3])


def test_two_ranks_with_summed_gradients_train_as_one(gen):
    """Two ranks in threads, each with its slice of the global batch; ``sync_grads`` sums their gradients."""
    config = dataclasses.replace(SHORT, iterations=4, checkpoint_every=0)
    alone_grads = []
    whole = list(train_hypernet(gen, _clip(), TRAIN, config, sync_grads=lambda net: alone_grads.append(
        [p.grad.clone() for p in net.parameters()])))
    barrier, slots, results, summed = threading.Barrier(2, timeout=60), [None, None], [None, None], [[], []]

    def sync_for(rank: int):
        def sync(net):
            slots[rank] = [p.grad.clone() for p in net.parameters()]
            barrier.wait()
            for p, a, b in zip(net.parameters(), *slots):
                p.grad = a + b
            summed[rank].append([p.grad.clone() for p in net.parameters()])
            barrier.wait()
        return sync

    def work(rank: int):
        results[rank] = list(train_hypernet(gen, _clip(), TRAIN, config, rank=rank, world=2,
                                            sync_grads=sync_for(rank)))

    threads = [threading.Thread(target=work, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(summed[0]) == len(summed[1]) == len(alone_grads) == 4
    # rank 0 trains prompts 0 and 2 of each step's 3, rank 1 prompt 1; their losses add up to the whole batch's
    for r0, r1, rw in zip(results[0], results[1], whole):
        assert r0.losses["total"] + r1.losses["total"] == pytest.approx(rw.losses["total"], rel=1e-5)
    for got, want in zip(summed[0][0], alone_grads[0]):  # step 1: the same weights, so the same gradient, up to
        #   the rounding of other batch sizes, which the directional loss's normalisation of the tiny first image
        #   changes amplifies (measured: 2.5e-4 of the gradient's norm; a run repeated is bit-for-bit the same)
        assert float((got - want).norm()) < 1e-3 * float(want.norm())
    a, b, c = _weights(results[0][-1].hypernet), _weights(results[1][-1].hypernet), _weights(whole[-1].hypernet)
    for k in c:
        assert torch.equal(a[k], b[k])  # the ranks agree exactly
    # and train the hypernetwork one process trains, judged by its offsets (single weights may differ by an Adam
    # step where a gradient is ~0 and rounding flips its sign)
    with torch.no_grad():
        offsets = [r[-1].hypernet(text_direction(_clip(), "photo", "red blue")) for r in (results[0], whole)]
    for k in offsets[0]:
        assert float((offsets[0][k] - offsets[1][k]).norm()) < 0.02 * float(offsets[1][k].norm())


class _NanAfter(ColourClip):
    """The colour stand-in whose image features turn NaN after ``n`` calls (two per training step)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def encode_image(self, pixels):
        out = super().encode_image(pixels)
        return out * float("nan") if self.calls > self.n else out


def test_a_non_finite_loss_ends_with_the_last_good_hypernet(gen):
    config = dataclasses.replace(SHORT, checkpoint_every=0)
    records = list(train_hypernet(gen, [(_NanAfter(4), 1.0)], TRAIN, config))
    last = records[-1]
    assert last.done and last.step == 2 and "step 3" in last.error and "from step 2" in last.error
    two = list(train_hypernet(gen, _clip(), TRAIN, dataclasses.replace(config, iterations=2)))[-1].hypernet
    a, b = _weights(last.hypernet), _weights(two)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pairs_and_targets_alone_are_the_same_prompts(gen):
    config = dataclasses.replace(SHORT, iterations=2, checkpoint_every=0)
    alone = list(train_hypernet(gen, _clip(), TRAIN, config))
    pairs = list(train_hypernet(gen, _clip(), [("Photo", t) for t in TRAIN], config))
    assert [r.losses for r in alone] == [r.losses for r in pairs]
    # the caller's generator is never touched: no offsets, no gradients, its weights as they were
    assert gen.style_offsets() == {} and all(p.grad is None for p in gen.parameters())
    assert torch.equal(gen.state_dict()["convs.0.conv.weight"], make_tiny_generator(size=32).state_dict()[
        "convs.0.conv.weight"])


@pytest.mark.parametrize("prompts, message", [
    ([], "prompt list is empty"),
    (["red", "  "], "Prompt 2 of the prompt list: The target prompt is empty"),
    (["red", "blue " * 80], "Prompt 2 of the prompt list: .*too long"),
    ([("photo", "Photo")], "the same"),
    ("red", "a list of prompts"),
    ([("photo",)], "a target text or a \\(source, target\\) pair"),
])
def test_bad_prompts_are_refused_before_anything_trains(gen, prompts, message):
    with pytest.raises(ValueError, match=message):
        train_hypernet(gen, _clip(), prompts, SHORT)


def test_bad_settings_are_refused_before_anything_trains(gen):
    with pytest.raises(ValueError, match="Prompts_per_step must be an integer >= 1"):
        train_hypernet(gen, _clip(), TRAIN, dataclasses.replace(SHORT, prompts_per_step=0))
    with pytest.raises(ValueError, match="needs batch_size >= 2"):
        train_hypernet(gen, _clip(), TRAIN, dataclasses.replace(SHORT, batch_size=1, lambda_indomain=0.5))
    with pytest.raises(ValueError, match="template must hold"):
        train_hypernet(gen, _clip(), TRAIN, dataclasses.replace(SHORT, template="a photo"))
    with pytest.raises(ValueError, match="2 CLIP models given for the 1"):
        train_hypernet(gen, _clip() * 2, TRAIN, SHORT)
    with pytest.raises(ValueError, match="needs sync_grads"):
        train_hypernet(gen, _clip(), TRAIN, SHORT, rank=0, world=2)
    with pytest.raises(ValueError, match="held-out list: The target prompt is empty"):
        train_hypernet(gen, _clip(), TRAIN, SHORT, held_out=[""])
    with pytest.raises(ValueError, match="Every W\\+ row is frozen|nothing to predict"):
        train_hypernet(gen, _clip(), TRAIN, dataclasses.replace(SHORT, frozen_rows=tuple(range(8))))
