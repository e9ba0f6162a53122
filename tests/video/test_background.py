"""The per-pixel adaptive mixture: known answers, a plain reference written here, OpenCV's
MOG2 on the same frames, hostile frames, files."""

import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gaussmix.video import BackgroundModel, scenes


def reference_update(modes, x, alpha, p):
    """One pixel, one frame, written from Zivkovic's equations as OpenCV's MOG2 states them.

    ``modes``: list of [weight, mean (array), variance], heaviest first; ``p``: the
    parameters. Returns the new modes and the mask value."""
    modes = [[w, m.copy(), v] for w, m, v in modes]
    prune = alpha * p["complexity_reduction"]
    for mode in modes:
        mode[0] = (1 - alpha) * mode[0] - prune
    background, matched, before = False, False, 0.0
    for i, (w, m, v) in enumerate(modes):
        d2 = float(((x - m) ** 2).sum())
        if before < p["background_ratio"] and d2 < p["var_threshold"] * v:
            background = True
        if d2 < p["var_threshold_gen"] * v:
            matched = True
            w += alpha
            k = alpha / w
            modes[i] = [w, m + k * (x - m), min(max(v + k * (d2 - v), p["var_min"]),
                                                p["var_max"])]
            while i > 0 and modes[i][0] >= modes[i - 1][0]:
                modes[i], modes[i - 1] = modes[i - 1], modes[i]
                i -= 1
            break
        before += w
    modes = [mode for mode in modes if mode[0] >= prune and mode[0] > 0]
    total = sum(mode[0] for mode in modes)
    for mode in modes:
        mode[0] /= total
    if not matched and alpha > 0:
        if len(modes) == p["n_components"]:
            modes.pop()
        for mode in modes:
            mode[0] *= 1 - alpha
        modes.append([1.0 if not modes else alpha, x.astype(float), p["var_init"]])
        i = len(modes) - 1
        while i > 0 and modes[i][0] >= modes[i - 1][0]:
            modes[i], modes[i - 1] = modes[i - 1], modes[i]
            i -= 1
    # stored as the model stores them, before the shadow test reads them
    modes = [[float(np.float32(w)), m.astype(np.float32).astype(float), float(np.float32(v))]
             for w, m, v in modes]
    if background:
        return modes, 0
    if p["detect_shadows"] and reference_shadow(modes, x, p):
        return modes, p["shadow_value"]
    return modes, 255


def reference_shadow(modes, x, p):
    cumulative = 0.0
    for w, m, v in modes:
        numerator, denominator = float(x @ m), float(m @ m)
        if denominator <= 0:
            return False
        if p["shadow_threshold"] * denominator <= numerator <= denominator:
            a = numerator / denominator
            if float(((a * m - x) ** 2).sum()) < p["var_threshold"] * v * a * a:
                return True
        cumulative += w
        if cumulative > p["background_ratio"]:
            return False
    return False


def reference_masks(frames, **params):
    """Masks of a few-pixel sequence by the reference, pixel by pixel."""
    p = BackgroundModel(**params).get_params()
    n, height, width = frames.shape[:3]
    pixels = frames.reshape(n, height * width, -1).astype(float)
    state = [[] for _ in range(height * width)]
    masks = np.zeros((n, height * width), np.uint8)
    for t in range(n):
        alpha = 1.0 / min(2 * (t + 1), p["history"])
        for q in range(height * width):
            state[q], masks[t, q] = reference_update(state[q], pixels[t, q], alpha, p)
    return masks.reshape(n, height, width), state


def masks_of(model, frames):
    return np.stack([model.apply(frame) for frame in frames])


def test_a_static_scene_is_learned_as_background():
    scene = scenes.picture("coffee", (48, 64)).astype(np.uint8)
    rng = np.random.default_rng(0)
    model = BackgroundModel()
    for _ in range(40):
        noisy = np.clip(scene + rng.normal(0, 2, scene.shape), 0, 255).astype(np.uint8)
        mask = model.apply(noisy)
    assert (mask == 0).mean() > 0.99
    assert np.abs(model.background_image().astype(int) - scene).mean() < 1.5
    assert (model.components_per_pixel() == 1).mean() > 0.9


def test_a_pixel_alternating_between_two_colours_is_background_once_both_are_learned():
    model = BackgroundModel()
    colours = (np.full((8, 8, 3), 40, np.uint8), np.full((8, 8, 3), 200, np.uint8))
    masks = [model.apply(colours[t % 2]) for t in range(200)]
    assert (masks[-1] == 0).all() and (masks[-2] == 0).all()
    assert (model.components_per_pixel() == 2).all()
    single = BackgroundModel(n_components=1)
    masks = [single.apply(colours[t % 2]) for t in range(200)]
    assert (masks[-1] != 0).all() and (masks[-2] != 0).all()  # one Gaussian cannot hold both


def test_an_object_entering_is_foreground_and_its_shadow_is_127():
    background = np.tile(np.linspace(60, 200, 64, dtype=np.uint8)[None, :, None], (48, 1, 3))
    model = BackgroundModel()
    rng = np.random.default_rng(1)
    for _ in range(30):
        model.apply(np.clip(background + rng.normal(0, 1.5, background.shape), 0, 255)
                    .astype(np.uint8))
    frame = background.copy()
    frame[10:20, 10:20] = (20, 220, 30)                                   # an object
    frame[30:40, 30:50] = (background[30:40, 30:50] * 0.6).astype(np.uint8)  # its shadow
    mask = model.apply(frame)
    assert (mask[10:20, 10:20] == 255).all()
    assert (mask[30:40, 30:50] == 127).all()
    assert (mask[:8] == 0).all()
    assert (BackgroundModel(detect_shadows=False).apply(frame) != 127).all()


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 3), (4, 3, 2)])
def test_masks_and_state_equal_a_plain_reference(shape):
    rng = np.random.default_rng(sum(shape))
    # Values that revisit a few levels, so that modes are matched, created, pruned, sorted.
    levels = rng.choice([10, 12, 90, 92, 180, 250], size=(60, *shape))
    frames = np.clip(levels + rng.normal(0, 2, levels.shape), 0, 255).astype(np.uint8)
    # background_ratio off the round numbers that the weights of the first frames sum to
    # (0.9 = 1 - 1/10): there a sum's last bit decides, in float32 as in OpenCV.
    params = dict(n_components=3, history=20, shadow_threshold=0.3, background_ratio=0.87)
    expected, state = reference_masks(frames, **params)
    model = BackgroundModel(**params)
    found = masks_of(model, frames)
    assert (found != expected).sum() <= 1, "more than a tie's worth of different decisions"
    weights, means, variances, n_modes = model._state
    agreeing = (found == expected).all(axis=0).ravel()
    for q, modes in enumerate(state):
        if not agreeing[q]:
            continue
        assert n_modes[q] == len(modes)
        for i, (w, m, v) in enumerate(modes):
            np.testing.assert_allclose(weights[q, i], w, rtol=1e-5)
            np.testing.assert_allclose(means[q, i], m, rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(variances[q, i], v, rtol=1e-5)


@pytest.mark.parametrize("make", [scenes.crossing, lambda: scenes.shadows(n_frames=80,
                                                                          size=(96, 128))])
def test_masks_equal_opencv_mog2_on_the_same_frames(make):
    cv2 = pytest.importorskip("cv2")
    scene = make()
    theirs = cv2.createBackgroundSubtractorMOG2()
    expected = np.stack([theirs.apply(frame) for frame in scene.frames])
    ours = BackgroundModel()
    found = masks_of(ours, scene.frames)
    assert (found == expected).mean() > 0.9999
    assert np.abs(ours.background_image().astype(int)
                  - theirs.getBackgroundImage().astype(int)).max() <= 1


def test_float_and_uint16_frames_are_read_in_8_bit_levels():
    scene = scenes.crossing(n_frames=50)
    as_uint8 = masks_of(BackgroundModel(), scene.frames)
    as_float = masks_of(BackgroundModel(), scene.frames.astype(np.float64) / 255)
    as_uint16 = masks_of(BackgroundModel(), scene.frames.astype(np.uint16) * 257)
    assert (as_float == as_uint8).mean() > 0.999
    assert (as_uint16 == as_uint8).mean() > 0.999
    model = BackgroundModel()
    for frame in scene.frames[:5].astype(np.float32) / 255:
        model.apply(frame)
    assert model.background_image().dtype == np.float32
    assert 0 <= model.background_image().min() and model.background_image().max() <= 1


def test_a_learning_rate_of_zero_classifies_without_learning():
    scene = scenes.crossing(n_frames=30)
    model = BackgroundModel()
    masks_of(model, scene.frames[:20])
    before = [a.copy() for a in model._state]
    model.apply(scene.frames[25], learning_rate=0)
    weights, means, variances, n_modes = model._state
    np.testing.assert_allclose(weights, before[0], rtol=1e-6)  # renormalised, to rounding
    for a, b in zip(before[1:], (means, variances, n_modes)):
        np.testing.assert_array_equal(a, b)


frame_shapes = st.tuples(st.integers(1, 6), st.integers(1, 7), st.sampled_from([0, 1, 3, 4]))


@settings(max_examples=40, deadline=None)
@given(shape=frame_shapes, data=st.data(), kind=st.sampled_from(["uint8", "float", "const"]))
def test_any_frames_give_masks_of_three_values_and_a_finite_state(shape, data, kind):
    height, width, channels = shape
    size = (height, width) if channels == 0 else (height, width, channels)
    n = data.draw(st.integers(1, 12))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "uint8":
        frames = rng.choice([0, 1, 128, 254, 255], size=(n, *size)).astype(np.uint8)
    elif kind == "float":
        frames = rng.uniform(0, 1, size=(n, *size)) ** 4
    else:
        frames = np.full((n, *size), data.draw(st.sampled_from([0, 255])), np.uint8)
    model = BackgroundModel(n_components=data.draw(st.integers(1, 5)))
    for frame in frames:
        rate = data.draw(st.one_of(st.none(), st.floats(0, 1)))
        mask = model.apply(frame, learning_rate=rate)
        assert mask.shape == (height, width) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 127, 255}
    for array in model._state[:3]:
        assert np.isfinite(array).all()
    weights, _, variances, n_modes = model._state
    live = np.arange(weights.shape[1]) < n_modes[:, None]
    assert (n_modes >= 1).all()
    assert (np.where(live, weights, 0).sum(axis=1) <= 1 + 1e-4).all()
    assert (variances[live] >= 4 - 1e-4).all() and (variances[live] <= 75 + 1e-3).all()
    assert np.isfinite(model.background_image().astype(float)).all()


@pytest.mark.parametrize("frame, words", [
    (np.zeros((4, 5, 5), np.uint8), "1 to 4 channels"),
    (np.zeros(7, np.uint8), "(height, width)"),
    (np.array([["a"]]), "numbers"),
    (np.full((4, 5), np.nan), "NaN"),
    (np.zeros((0, 5), np.uint8), "at least one pixel"),
])
def test_a_bad_frame_is_one_sentence(frame, words):
    with pytest.raises(ValueError) as error:
        BackgroundModel().apply(frame)
    assert words in str(error.value) and str(error.value).count("\n") == 0


def test_frames_of_another_size_or_dtype_are_refused():
    model = BackgroundModel()
    model.apply(np.zeros((4, 5), np.uint8))
    for other in (np.zeros((4, 6), np.uint8), np.zeros((4, 5), np.float32),
                  np.zeros((4, 5, 3), np.uint8)):
        with pytest.raises(ValueError, match="one size and dtype"):
            model.apply(other)


@pytest.mark.parametrize("params", [dict(n_components=0), dict(history=0),
                                    dict(var_threshold=-1), dict(background_ratio=1.5),
                                    dict(var_min=10, var_init=5), dict(shadow_value=255),
                                    dict(detect_shadows="yes"), dict(var_max=np.inf)])
def test_bad_parameters_are_refused_at_the_first_frame(params):
    with pytest.raises(ValueError):
        BackgroundModel(**params).apply(np.zeros((3, 3), np.uint8))


@pytest.mark.parametrize("rate", [1.5, "fast", True])
def test_a_bad_learning_rate_is_refused(rate):
    with pytest.raises(ValueError, match="learning_rate"):
        BackgroundModel().apply(np.zeros((3, 3), np.uint8), learning_rate=rate)


def test_nothing_to_show_before_the_first_frame():
    with pytest.raises(ValueError, match="no frame"):
        BackgroundModel().background_image()
    with pytest.raises(ValueError, match="no frame"):
        BackgroundModel().save("never.npz")


def test_a_saved_model_goes_on_learning_as_the_original(tmp_path):
    scene = scenes.crossing(n_frames=80)
    original = BackgroundModel(history=50, n_components=4)
    masks_of(original, scene.frames[:40])
    original.save(tmp_path / "background.npz")
    loaded = BackgroundModel.load(tmp_path / "background.npz")
    assert loaded.get_params() == original.get_params()
    assert loaded.n_frames_ == 40 and loaded.frame_shape_ == original.frame_shape_
    np.testing.assert_array_equal(masks_of(loaded, scene.frames[40:]),
                                  masks_of(original, scene.frames[40:]))
    np.testing.assert_array_equal(loaded.background_image(), original.background_image())


def test_broken_and_foreign_files_are_refused_with_one_sentence(tmp_path):
    from gaussmix import GaussianMixture

    model = BackgroundModel()
    model.apply(np.zeros((6, 7, 3), np.uint8))
    model.save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    mixture = GaussianMixture.from_params([1.0], [[0.0]], [1.0], covariance_type="spherical")
    mixture.save(tmp_path / "mixture.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    with zipfile.ZipFile(tmp_path / "good.npz") as good, \
            zipfile.ZipFile(tmp_path / "forged.npz", "w") as forged:
        for item in good.infolist():
            body = good.read(item)
            if item.filename == "variances.npy":
                body = body.replace(b"(42, 5)", b"(42, 6)")
            forged.writestr(item, body)
    for name in ("truncated", "mixture", "foreign", "forged"):
        with pytest.raises(ValueError) as error:
            BackgroundModel.load(tmp_path / f"{name}.npz")
        assert str(error.value).startswith("Cannot load") and "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError):
        BackgroundModel.load(tmp_path / "missing.npz")


def test_the_state_holds_o_of_pixels_times_components():
    model = BackgroundModel(n_components=3)
    model.apply(np.zeros((240, 320, 3), np.uint8))
    n_bytes = sum(a.nbytes for a in model._state)
    assert n_bytes <= 240 * 320 * (4 * 3 * (2 + 3) + 4)
