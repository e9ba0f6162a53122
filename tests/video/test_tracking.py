"""Detections, the tracker and ``track`` on scenes with known trajectories."""

import numpy as np
import pytest

from gaussmix.video import Detection, Tracker, detect, scenes, track


def disc(mask, x, y, r, value=255):
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    mask[(xx - x) ** 2 + (yy - y) ** 2 <= r * r] = value


def test_detect_finds_each_object_with_its_centroid_and_area():
    mask = np.zeros((80, 120), np.uint8)
    disc(mask, 30, 40, 10)
    disc(mask, 90, 20, 6)
    mask[70, 5:7] = 255                    # a speck
    disc(mask, 90, 60, 8, value=127)       # a shadow is not an object
    found = sorted(detect(mask, frame_index=7, clean=0), key=lambda d: d.x)
    assert len(found) == 2
    assert [d.frame for d in found] == [7, 7]
    assert abs(found[0].x - 30) < 0.5 and abs(found[0].y - 40) < 0.5
    assert abs(found[0].area - np.pi * 100) < 0.1 * np.pi * 100
    top, left, bottom, right = found[1].box
    assert (top, left) == (14, 84) and (bottom, right) == (27, 97)


def test_pieces_of_one_object_are_joined_and_small_ones_dropped():
    mask = np.zeros((60, 60), np.uint8)
    for x in range(10, 50, 6):             # stripes 3 pixels apart: one striped object
        mask[20:40, x:x + 3] = 255
    assert len(detect(mask)) == 1
    assert len(detect(mask, join=0, clean=0)) == 7
    assert detect(mask, min_area=10_000) == []


def crossing_detections(n=60):
    """Two objects crossing at frame 30, one going right, one left, and at frames 27-33
    seen as one merged region (as a mask shows them)."""
    frames = []
    for t in range(n):
        a, b = (10 + 3 * t, 50.0), (190 - 3 * t, 56.0)
        if 27 <= t <= 33:
            frames.append([Detection(t, (a[0] + b[0]) / 2, 53.0, (40, 0, 60, 10), 200)])
        else:
            frames.append([Detection(t, *a, (40, 0, 60, 10), 100),
                           Detection(t, *b, (40, 0, 60, 10), 100)])
    return frames


def test_objects_that_cross_keep_their_ids_through_the_merge():
    tracker = Tracker()
    for detections in crossing_detections():
        tracker.update(detections)
    tracks = tracker.tracks()
    assert len(tracks) == 2
    for found in tracks:
        assert found.frames[0] == 0 and found.frames[-1] == 59
        going_right = found.positions[0, 0] == 10
        apart = (found.frames < 27) | (found.frames > 33)
        expected = np.where(going_right, 10 + 3 * found.frames, 190 - 3 * found.frames)
        np.testing.assert_allclose(found.positions[apart, 0], expected[apart])
        predicted = [d.frame for d in found.detections if d.predicted]
        assert set(predicted) <= set(range(27, 34))


def test_without_a_velocity_model_the_merge_swaps_nothing_but_ids_may_end():
    tracker = Tracker(kalman=False, max_distance=20)
    for detections in crossing_detections():
        tracker.update(detections)
    assert all(t.seen >= 3 for t in tracker.tracks())


def test_a_track_coasts_then_ends_and_ends_with_its_last_sighting():
    tracker = Tracker(max_missed=5, min_hits=2)
    for t in range(10):
        tracker.update([Detection(t, 10.0 + 2 * t, 20.0, (15, 5, 25, 15), 50)])
    for _ in range(12):
        tracker.update([])
    (only,) = tracker.tracks()
    assert only.frames[-1] == 9 and only.seen == 10
    shown = Tracker(max_missed=5, min_hits=2)
    shown.update([Detection(0, 10.0, 20.0, (15, 5, 25, 15), 50)])
    assert shown.update([Detection(1, 12.0, 20.0, (15, 5, 25, 15), 50)])
    (coasting,) = shown.update([])
    assert coasting[1].predicted and coasting[1].frame == 2


def test_an_object_that_stops_fades_and_moves_on_keeps_its_id():
    """As a background model shows it: moving, then standing still while its region shrinks
    and creeps (it is being learned as background), then unseen for 60 frames, then moving on
    from where it stood."""
    tracker = Tracker()
    for t in range(100):
        if t < 40:
            tracker.update([Detection(t, 2.0 * t, 50.0, (40, 0, 60, 10), 300)])
        elif t < 60:
            tracker.update([Detection(t, 80.0 + 0.6 * (t - 40), 50.0, (40, 0, 60, 10), 100)])
        elif t < 120:
            tracker.update([])
    for t in range(160, 200):
        tracker.update([Detection(t, 95.0 + 2.0 * (t - 160), 50.0, (40, 0, 60, 10), 300)])
    (only,) = tracker.tracks()
    assert only.seen == 100
    moving = Tracker()  # a moving object that vanishes is not waited for that long
    for t in range(40):
        moving.update([Detection(t, 2.0 * t, 50.0, (40, 0, 60, 10), 300)])
    for _ in range(moving.max_missed + 1):
        moving.update([])
    moving.update([Detection(80, 80.0, 50.0, (40, 0, 60, 10), 300)])
    assert len([t for t in moving.tracks()]) == 1 and moving._next_id == 3


def test_min_hits_hides_flickers():
    tracker = Tracker(min_hits=3)
    tracker.update([Detection(0, 5.0, 5.0, (0, 0, 10, 10), 50)])
    tracker.update([])
    assert tracker.tracks() == []


@pytest.mark.parametrize("params", [dict(max_distance=-1), dict(max_missed=-1),
                                    dict(min_hits=0), dict(measurement_noise=0),
                                    dict(max_distance=float("nan"))])
def test_bad_tracker_parameters_are_refused(params):
    with pytest.raises(ValueError):
        Tracker(**params)


def test_track_follows_each_object_of_a_scene_under_one_id():
    scene = scenes.crossing()
    tracks = track(scene.frames)
    assert len(tracks) == 2
    for found in tracks:
        # each track follows one true object: within a few pixels of its centre throughout
        gaps = [np.nanmin(np.linalg.norm(scene.centres[f] - p, axis=1))
                for f, p in zip(found.frames, found.positions)]
        owner = np.nanargmin(np.linalg.norm(scene.centres[found.frames[0]]
                                            - found.positions[0], axis=1))
        own = np.linalg.norm(scene.centres[found.frames, owner] - found.positions, axis=1)
        assert np.nanmedian(own) < 3 and np.nanmax(gaps) < 20  # entering: half visible


def test_scenes_have_truth_that_matches_their_frames():
    scene = scenes.shadows(n_frames=40, size=(60, 80))
    assert scene.frames.shape == (40, 60, 80, 3) and scene.truth.shape == (40, 60, 80)
    assert set(np.unique(scene.truth)) == {0, 127, 255}
    assert (scene.truth[: scenes.WARM_UP] == 0).all()
    inside = ~np.isnan(scene.centres[:, :, 0])
    assert inside[scenes.WARM_UP:].any()
