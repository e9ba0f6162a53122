"""``gaussmix track`` end to end: folders of frames and video files in, a whole run out; every
bad input one sentence and exit code 2; a killed run never leaves a report of half a run."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from gaussmix import cli
from gaussmix.video import scenes

from ..processes import kill_during_second_run, whole_run_report

pytest.importorskip("imageio_ffmpeg")


def run(argv, capsys=None):
    out, err = io.StringIO(), io.StringIO()
    try:
        code = cli.main(argv, stdout=out, stderr=err)
    except SystemExit as stop:  # the parser's own refusals print to sys.stderr
        code = stop.code
        err.write(capsys.readouterr().err)
    return code, out.getvalue(), err.getvalue()


def one_sentence(text):
    lines = [line for line in text.strip().splitlines() if line]
    return len(lines) == 1 and "Traceback" not in text and lines[0].startswith("gaussmix track")


@pytest.fixture(scope="module")
def scene():
    return scenes.crossing(n_frames=90)


@pytest.fixture
def frame_folder(tmp_path, scene):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(scene.frames):
        Image.fromarray(frame).save(folder / f"frame{index}.png")  # frame10 after frame9
    return folder


def write_video(path, frames, fps=25):
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                         quality=9, macro_block_size=1,
                                         ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def test_a_folder_of_frames_gives_masks_tracks_and_a_report(frame_folder, tmp_path, scene):
    out = tmp_path / "out"
    code, stdout, stderr = run(["track", str(frame_folder), "--out", str(out), "--quiet",
                                "--annotated", "gif"])
    assert code == 0, stderr
    assert "90 frames" in stdout and "2 tracks" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 90 and len(report["tracks"]) == 2
    assert report["files"] == ["masks", "annotated.gif", "tracks.csv", "background.png"]
    masks = sorted((out / "masks").iterdir())
    assert len(masks) == 90
    assert set(np.unique(np.asarray(Image.open(masks[60])))) <= {0, 127, 255}
    with Image.open(out / "annotated.gif") as gif:
        assert gif.n_frames == 90 and gif.size == (160, 120)
    rows = list(csv.DictReader((out / "tracks.csv").open()))
    assert {r["track_id"] for r in rows} == {"1", "2"}
    first = [r for r in rows if r["track_id"] == "1"]
    frame = int(first[10]["frame"])
    true = scene.centres[frame]
    x, y = float(first[10]["x"]), float(first[10]["y"])
    assert np.nanmin(np.hypot(true[:, 0] - x, true[:, 1] - y)) < 5
    background = np.asarray(Image.open(out / "background.png"))
    assert np.abs(background.astype(int) - scene.frames[0].astype(int)).mean() < 6


def test_a_video_file_is_read_and_a_second_run_replaces_the_first(tmp_path, scene):
    video = tmp_path / "clip.mp4"
    write_video(video, scene.frames)
    out = tmp_path / "clip-track"
    code, stdout, stderr = run(["track", str(video), "--out", str(out), "--quiet"])
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 90 and report["fps"] == 25.0
    assert len(report["tracks"]) == 2
    assert (out / "annotated.mp4").stat().st_size > 1000
    code, _, stderr = run(["track", str(video), "--out", str(out), "--quiet", "--no-masks",
                           "--annotated", "none", "--max-frames", "40"])
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 40 and report["files"] == ["tracks.csv", "background.png"]


def test_the_default_folder_is_named_after_the_video(frame_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run(["track", "frames/", "--quiet", "--annotated", "none",
                           "--max-frames", "5"])
    assert code == 0, stderr
    assert (tmp_path / "frames-track" / "report.json").exists()


def bad_inputs(tmp_path, scene):
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    single = tmp_path / "single"
    single.mkdir()
    Image.fromarray(scene.frames[0]).save(single / "0.png")
    two = tmp_path / "two"
    two.mkdir()
    for index in range(2):
        Image.fromarray(scene.frames[index]).save(two / f"{index}.png")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(scene.frames[0]).save(mixed / "0.png")
    Image.fromarray(scene.frames[1][:60]).save(mixed / "1.png")
    write_video(tmp_path / "one.mp4", scene.frames[:1])
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken.mp4"
    write_video(broken, scene.frames)
    data = broken.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    return {
        "missing": (["track", str(tmp_path / "nowhere.mp4")], "No video"),
        "not a video": (["track", str(tmp_path / "text.mp4")], "as a video"),
        "one frame": (["track", str(single)], "at least two"),
        "one-frame video": (["track", str(tmp_path / "one.mp4")], "at least two"),
        "empty folder": (["track", str(tmp_path / "empty")], "at least two"),
        "sizes differ": (["track", str(mixed), "--annotated", "none"], "one size"),
        "cut short": (["track", str(tmp_path / "cut.mp4"), "--annotated", "none"], ""),
        "bad option": (["track", str(single), "--history", "0"], "history"),
        "out is a file": (["track", str(two), "--out", str(tmp_path / "text.mp4")],
                          "output folder"),
    }


def test_every_bad_input_is_one_sentence_and_exit_code_2(tmp_path, scene, capsys):
    for name, (argv, words) in bad_inputs(tmp_path, scene).items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        argv = argv + (["--out", str(out)] if "--out" not in argv else []) + ["--quiet"]
        code, _, stderr = run(argv, capsys)
        if name == "cut short" and code == 0:
            continue  # ffmpeg may decode the frames before the cut and stop there: fine
        assert code == 2, (name, stderr)
        assert one_sentence(stderr), (name, stderr)
        assert words in stderr, (name, stderr)
        assert not (out / "report.json").exists(), name
        if name not in ("cut short", "sizes differ", "out is a file"):  # refused at the door
            assert not out.exists(), name


def test_an_unwritable_folder_is_one_sentence(frame_folder, tmp_path):
    import os

    if os.geteuid() == 0:
        locked = "/proc/gaussmix-cannot-write-here"
    else:
        (tmp_path / "locked").mkdir(mode=0o500)
        locked = str(tmp_path / "locked" / "out")
    code, _, stderr = run(["track", str(frame_folder), "--out", locked, "--quiet"])
    assert code == 2 and one_sentence(stderr), stderr


TRACK_TWICE = """
    import sys
    from gaussmix.cli import main
    main(["track", sys.argv[1], "--out", "run", "--quiet", "--annotated", "gif"])
    open("first-done", "w").close()
    main(["track", sys.argv[1], "--out", "run", "--quiet", "--annotated", "gif",
          "--min-area", "60"])
"""


@pytest.mark.slow
@pytest.mark.parametrize("extra_delay", [0.2, 1.0, 2.5])
def test_a_killed_run_leaves_the_earlier_run_whole_or_no_report(frame_folder, tmp_path,
                                                                 extra_delay):
    kill_during_second_run(TRACK_TWICE, frame_folder, tmp_path, extra_delay)
    report = whole_run_report(tmp_path / "run")
    if report is not None:
        assert len(list((tmp_path / "run" / "masks").iterdir())) == report["frames"]
        rows = list(csv.DictReader((tmp_path / "run" / "tracks.csv").open()))
        assert {int(r["track_id"]) for r in rows} == {t["id"] for t in report["tracks"]}
