"""The ``gaussmix`` command: parses arguments, calls the public API, prints progress.

Every user error ends with one sentence on stderr and exit code 2, never a traceback. Each
subcommand imports what it runs inside its function: numpy, scikit-learn, scikit-image,
matplotlib and Starlette load only for the command that needs them, so that ``gaussmix
--help`` and a mistyped option answer in a tenth of a second.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument or input, reported as one sentence with exit code 2."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _seed(text):
    from ._foundations.validation import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must lie in [0, {MAX_SEED}], got {value}")
    return value


def _unit_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {value}")
    return value


def _finite_non_negative_float(text):
    value = _non_negative_float(text)
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _box(text):
    parts = text.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected four whole numbers x0,y0,x1,y1, got {text!r}")
    return values


def _render_list(text):
    return tuple(part.strip() for part in text.split(",") if part.strip())


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one sentence with exit code 2 (as argparse does)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help.\n")


def build_parser():
    from .imaging.choices import MODES, RENDERS

    parser = _Parser(prog="gaussmix", description="Painless Gaussian mixture models: paint "
                     "pictures with mixtures of Gaussians.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    paint = sub.add_parser("paint", help="fit a mixture to a picture and render it back",
                           description="Fit a Gaussian mixture to a picture and write its "
                           "renders, the model and report.json into a folder.")
    paint.add_argument("image", help="picture file (PNG, JPEG, ...)")
    _add_paint_options(paint, MODES, RENDERS)
    paint.add_argument("--out", default=None, help="output folder (default: IMAGE's name "
                       "without extension, plus '-gaussmix')")

    demo = sub.add_parser("demo", help="paint the sample pictures that ship with scikit-image",
                          description="Paint scikit-image's horse silhouette (black and white) "
                          "and astronaut photograph (colour), offline.")
    demo.add_argument("--out", default="gaussmix-demo", help="output folder (default: "
                      "gaussmix-demo)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    demo.add_argument("--dask", default=None, metavar="ADDRESS",
                      help="fit on a dask.distributed cluster (scheduler address)")

    figures = sub.add_parser("figures", help="write the tutorial figures",
                             description="Write the tutorial figures: 1-D mixtures, a 1-D fit "
                             "over its histogram, a sampling animation (GIF), a 2-D fit with "
                             "log-density contours, and conditional slices.")
    figures.add_argument("--out", default="gaussmix-figures", help="output folder (default: "
                         "gaussmix-figures)")
    figures.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")

    seg = sub.add_parser("segment", help="cut the foreground out of a picture",
                         description="Separate foreground from background with colour "
                         "Gaussian mixtures (as GrabCut does); writes mask.png and overlay.png.")
    seg.add_argument("image", help="picture file (PNG, JPEG, ...)")
    where = seg.add_mutually_exclusive_group(required=True)
    where.add_argument("--box", type=_box, help="x0,y0,x1,y1: a box around the object "
                       "(pixels outside are background)")
    where.add_argument("--mask", help="a picture whose white pixels are a rough first "
                       "foreground")
    seg.add_argument("-k", "--components", type=_positive_int, default=5,
                     help="components of each colour mixture (default 5)")
    seg.add_argument("--iterations", type=_positive_int, default=5,
                     help="rounds of fitting and relabelling (default 5)")
    seg.add_argument("--coherence", choices=("graphcut", "smooth", "none"), default="graphcut",
                     help="how neighbouring pixels are kept together (default graphcut)")
    seg.add_argument("--strength", type=_finite_non_negative_float, default=None,
                     help="neighbour penalty (graphcut, default 3) or smoothing in pixels "
                     "(smooth, default 1.5)")
    seg.add_argument("--out", default=None, help="output folder (default: IMAGE's name "
                     "without extension, plus '-segment')")

    tracking = sub.add_parser(
        "track", help="follow moving objects in a video",
        description="Learn the background of a video with an adaptive Gaussian mixture per "
        "pixel, follow the objects that move over it, and write masks/ (one PNG per frame: 0 "
        "background, 255 foreground, 127 shadow), an annotated video, tracks.csv, "
        "background.png and report.json into a folder.")
    tracking.add_argument("video", help="video file (MP4, AVI, MKV, WebM, GIF ...) or a folder "
                          "of frames (PNG, JPEG ...)")
    tracking.add_argument("--out", default=None, help="output folder (default: VIDEO's name "
                          "without extension, plus '-track')")
    tracking.add_argument("--history", type=_positive_int, default=500,
                          help="frames the background remembers (default 500)")
    tracking.add_argument("--var-threshold", type=_positive_float, default=16.0,
                          help="squared distance, in standard deviations, within which a "
                          "pixel is background (default 16)")
    tracking.add_argument("--components", type=_positive_int, default=5,
                          help="most Gaussians per pixel (default 5)")
    tracking.add_argument("--no-shadows", action="store_true",
                          help="do not tell shadows apart (they count as foreground)")
    tracking.add_argument("--min-area", type=_positive_int, default=40,
                          help="fewest pixels of an object (default 40)")
    tracking.add_argument("--max-distance", type=_positive_float, default=40.0,
                          help="farthest an object moves between frames, in pixels (default "
                          "40)")
    tracking.add_argument("--annotated", choices=("mp4", "gif", "none"), default="mp4",
                          help="annotated video: MP4, GIF (holds every frame in memory: short "
                          "clips) or none (default mp4)")
    tracking.add_argument("--no-masks", action="store_true", help="do not write masks/")
    tracking.add_argument("--max-frames", type=_positive_int, default=None,
                          help="stop after this many frames")
    tracking.add_argument("--quiet", action="store_true", help="no progress bars")

    studio = sub.add_parser("studio", help="a local web page that paints pictures, live",
                            description="Serve gaussmix studio: drop a picture, watch the "
                            "mixture learn it, move sliders to re-render it (offline).")
    studio.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    studio.add_argument("--port", type=_port, default=8765, help="port (default 8765)")
    studio.add_argument("--open", action="store_true", help="open the page in a browser")
    studio.add_argument("--workers", type=int, choices=(1, 2), default=1,
                        help="fits that run at once (default 1; more are queued)")
    return parser


def _port(text):
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {value}")
    return value


def _add_paint_options(parser, modes, renders):
    parser.add_argument("--mode", choices=modes, default="auto",
                        help="bw: (x, y) of dark pixels; color: (x, y, r, g, b) of every pixel; "
                        "auto: color for colour pictures (default)")
    parser.add_argument("-k", "--components", type=_positive_int, default=None,
                        help="number of components (default 500 bw, 1000 color)")
    parser.add_argument("--renders", type=_render_list, default=None,
                        help=f"comma-separated subset of {','.join(renders)} (default: all)")
    parser.add_argument("--samples", type=_positive_int, default=None,
                        help="dots in samples.png (default: scaled to the picture)")
    parser.add_argument("--sharpen", type=_positive_float, default=1.0,
                        help="multiply covariances by this before rendering (0.6 sharpens; "
                        "default 1)")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    parser.add_argument("--max-pixels", type=_positive_int, default=None,
                        help="downscale larger pictures to this many pixels for fitting "
                        "(default 1000000 bw, 262144 color)")
    parser.add_argument("--threshold", type=_unit_float, default=None,
                        help="bw: grey level in [0, 1] separating ink from paper (default Otsu)")
    parser.add_argument("--keep-light", action="store_true",
                        help="bw: keep the light pixels instead of the dark ones")
    parser.add_argument("--color-scale", type=_positive_float, default=1.0,
                        help="color: weight of colour against position (default 1)")
    parser.add_argument("--tone", default=None,
                        help="density-mapped tone curve as density:ink knots, e.g. "
                        "'0:0,0.8:0.08,0.9:0.35,0.95:0.6,0.98:0.85,1:1' (the default)")
    parser.add_argument("--peak", type=_unit_float, default=0.95,
                        help="density renders: quantile of the inked pixels' density shown as "
                        "full ink (1 = the maximum; default 0.95)")
    parser.add_argument("--mask", default=None, metavar="MASK",
                        help="inpaint: a picture of the same size whose white pixels' colours "
                        "are missing and filled in from the mixture (colour mode)")
    parser.add_argument("--bayesian", action="store_true",
                        help="fit a Bayesian mixture (Dirichlet process) with -k as the upper "
                        "bound; the renders show the components that carry weight")
    parser.add_argument("--max-iter", type=_positive_int, default=100,
                        help="EM iterations at most (default 100)")
    parser.add_argument("--dask", default=None, metavar="ADDRESS",
                        help="fit on a dask.distributed cluster (scheduler address, e.g. "
                        "tcp://host:8786)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def default_out(image_path, suffix="gaussmix"):
    stem = os.path.splitext(os.path.basename(os.path.normpath(image_path)))[0] or "picture"
    return f"{stem}-{suffix}"


# Whether this process said that the kernels compile (it says so once).
FIRST_RUN_NOTED = []


def note_first_run(reporter):
    """On a first run, start compiling numba's kernels in the background at once (a
    command's fits follow; a library fit starts them only when it ends) and say so, once."""
    from ._data.backends import kernels_usable, numba_available
    from ._fitting.fit import start_compiling
    from ._kernels import compile as stamps

    if FIRST_RUN_NOTED or not numba_available() or kernels_usable():
        return
    if stamps.can_compile_in_background() and start_compiling():
        FIRST_RUN_NOTED.append(True)
        reporter.note("compiling fast kernels in the background (first run only); until they "
                      "are ready, fits run on the numpy path.")


def _kernels_compiled():
    """Whether the warm-up has compiled every kernel (the video kernel among them)."""
    from ._kernels import compile as stamps

    return stamps.kernels_ready()


def paint_file(image, out, options, reporter, stdout):
    """Read (or take) a picture, paint it, write everything; returns the written paths."""
    from .imaging.files import prepare_output_folder, read_image, write_painting
    from .imaging.pipeline import paint

    folder = prepare_output_folder(out)
    note_first_run(reporter)
    picture = (read_image(image, note=reporter.note) if isinstance(image, (str, os.PathLike))
               else image)
    mask_path = options.pop("mask", None)
    if mask_path is not None:
        # Read at the picture's own reduction, so that the two keep one size.
        options["mask"] = read_image(mask_path, max_pixels=picture.shape[0] * picture.shape[1])
    painting = paint(picture, reporter=reporter, **options)
    written = write_painting(painting, folder)
    report = painting.report
    print(f"{report['mode']} picture {report['picture']['width']}x"
          f"{report['picture']['height']}, {report['points']} points, "
          f"{_components(report)}, {report['iterations']} EM iterations "
          f"({report['seconds']['fit']:.1f} s fit); wrote {len(written)} files to {folder}",
          file=stdout)
    return written


def _components(report):
    if report.get("bayesian"):
        return (f"{report['active_components']} of {report['n_components']} components "
                "carrying weight")
    return f"{report['n_components']} components"


def _paint_options(args):
    from .imaging.render import DEFAULT_TONE_KNOTS, parse_tone_knots

    return dict(
        mode=args.mode,
        n_components=args.components,
        renders=args.renders,
        n_samples=args.samples,
        sharpen=args.sharpen,
        seed=args.seed,
        max_pixels=args.max_pixels,
        threshold=args.threshold,
        keep="light" if args.keep_light else "dark",
        colour_scale=args.color_scale,
        tone_knots=DEFAULT_TONE_KNOTS if args.tone is None else parse_tone_knots(args.tone),
        peak_quantile=args.peak,
        max_iter=args.max_iter,
        dask_address=args.dask,
        bayesian=args.bayesian,
        mask=args.mask,
    )


def run_paint(args, stdout, stderr):
    from .imaging.progress import reporter_for

    try:
        options = _paint_options(args)
    except ValueError as exc:  # a malformed --tone
        raise UsageError(str(exc)) from None
    out = args.out or default_out(args.image)
    paint_file(args.image, out, options, reporter_for(stderr, args.quiet), stdout)


def run_demo(args, stdout, stderr):
    from skimage import data

    from .imaging.progress import reporter_for

    reporter = reporter_for(stderr, args.quiet)
    start = time.perf_counter()
    pictures = [("horse", data.horse(), "bw"), ("astronaut", data.astronaut(), "color")]
    for name, picture, mode in pictures:
        folder = os.path.join(args.out, name)
        print(f"painting scikit-image's {name} ({mode}) into {folder}", file=stdout)
        paint_file(picture, folder, dict(mode=mode, seed=args.seed, dask_address=args.dask),
                   reporter, stdout)
    print(f"demo done in {time.perf_counter() - start:.0f} s; open the PNG files in "
          f"{os.path.abspath(args.out)}", file=stdout)


def run_figures(args, stdout, stderr):
    from matplotlib.animation import PillowWriter

    from . import plotting
    from ._foundations.files import atomic_path
    from .imaging.files import prepare_output_folder, write_figure

    folder = prepare_output_folder(args.out)
    models = plotting.tutorial_models(args.seed)
    figures = {
        "1d-mixture.png": plotting.figure_1d_mixture(),
        "1d-weights.png": plotting.figure_1d_weights(),
        "1d-fit.png": plotting.figure_1d_fit(models["data_1d"], models["model_1d"]),
        "2d-density.png": plotting.figure_2d(models["data_2d"], models["model_2d"]),
        "conditionals.png": plotting.figure_conditionals(models["gaussian"], models["mixture"]),
        "dirichlet-process.png": plotting.figure_dirichlet_process(
            models["data_1d"], models["em_10"], models["dp_10"]),
    }
    for name, figure in figures.items():
        write_figure(os.path.join(folder, name), figure)
    fig, animation = plotting.sampling_animation(models["model_1d"], seed=args.seed)
    with atomic_path(os.path.join(folder, "sampling.gif")) as tmp:
        animation.save(tmp, writer=PillowWriter(fps=3))
    names = sorted(list(figures) + ["sampling.gif"])
    print(f"wrote {len(names)} figures to {folder}: {', '.join(names)}", file=stdout)


def run_segment(args, stdout, stderr):
    import numpy as np

    from .imaging.files import prepare_output_folder, read_image, write_png
    from .imaging.points import mask_from_picture
    from .segmentation import SegmentationError, overlay, segment

    folder = prepare_output_folder(args.out or default_out(args.image, "segment"))
    picture = read_image(args.image)
    mask = None
    if args.mask is not None:
        mask = mask_from_picture(read_image(args.mask))
    try:
        foreground = segment(picture, box=args.box, mask=mask, n_components=args.components,
                             iterations=args.iterations, coherence=args.coherence,
                             strength=args.strength)
    except SegmentationError as exc:
        raise UsageError(str(exc)) from None
    write_png(os.path.join(folder, "mask.png"), np.where(foreground, 255, 0).astype(np.uint8))
    write_png(os.path.join(folder, "overlay.png"), overlay(picture, foreground))
    share = foreground.mean()
    print(f"foreground: {int(foreground.sum())} pixels ({share:.1%}); wrote mask.png and "
          f"overlay.png to {folder}", file=stdout)


def run_track(args, stdout, stderr):
    from .imaging.files import prepare_output_folder
    from .imaging.progress import reporter_for
    from .video.files import open_video
    from .video.pipeline import summary, track_video

    video = open_video(args.video)  # before the output folder: a bad input leaves none
    folder = prepare_output_folder(args.out or default_out(args.video.rstrip("/\\"), "track"))
    reporter = reporter_for(stderr, args.quiet)
    if not _kernels_compiled():
        reporter.note("compiling the video kernel (first run only, a few seconds).")
    report = track_video(
        video, folder, reporter,
        background=dict(history=args.history, var_threshold=args.var_threshold,
                        n_components=args.components, detect_shadows=not args.no_shadows),
        detection=dict(min_area=args.min_area),
        tracking=dict(max_distance=args.max_distance),
        annotated=args.annotated, masks=not args.no_masks, max_frames=args.max_frames)
    print(summary(report), file=stdout)


# The optional dependencies a command may need, by top-level module, and their extra.
EXTRAS = {"PIL": "images", "skimage": "images", "matplotlib": "images", "rich": "images",
          "dask": "dask", "distributed": "dask", "torch": "torch", "starlette": "studio",
          "uvicorn": "studio", "multipart": "studio", "python_multipart": "studio",
          "imageio": "video", "imageio_ffmpeg": "video", "librosa": "audio",
          "soundfile": "audio"}


def missing_extra(exc):
    """One sentence for a missing optional dependency, or None for any other import error."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return (f"this needs {module}, which is not installed; install it with "
            f"pip install \"gaussmix[{extra}]\".")


def run_studio(args, stdout, stderr):
    from .studio import check_address, serve

    try:
        check_address(args.host, args.port)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                         "choose another --port or --host.") from None
    try:
        serve(args.host, args.port, args.open, args.workers,
              say=lambda text: print(text, file=stdout, flush=True))
    except KeyboardInterrupt:  # Ctrl-C: the way to stop it; the workers have ended
        pass
    print("gaussmix studio stopped", file=stdout)


COMMANDS = {"paint": run_paint, "demo": run_demo, "figures": run_figures, "segment": run_segment,
            "track": run_track, "studio": run_studio}


EXIT_INTERRUPTED = 130
INTERRUPTED = "gaussmix: interrupted"


def main(argv=None, stdout=None, stderr=None):
    """Run the command line; returns the exit code (130 after an interrupt, at any point of
    the run: the imports of the libraries included)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        return _run(argv, stdout, stderr)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=stderr)
        return EXIT_INTERRUPTED


def console_main(argv=None):
    """The ``gaussmix`` command: :func:`main` in a process of its own, which an interrupt
    ends at once (exit code 130, one line).

    An interrupt that lands in a compiled library's import comes out as that import's error
    (``ImportError: initialization failed``), and the half-initialised library can crash the
    interpreter's finalisation (a fatal error after the sentence). So the interrupt is
    recorded as it arrives, and once it has ended the run (its files' clean-ups done as the
    exception passed), the process exits without finalising.
    """
    import signal

    interrupts = []

    def on_interrupt(signum, frame):
        interrupts.append(signum)
        if _in_swallowing_callback(frame):
            # An exception raised in a compiled library's callback (numba writing its cache),
            # a finaliser or a weakref callback is printed and swallowed there: deliver the
            # interrupt again once it returned.
            _interrupt_again_soon()
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt) if _in_main_thread() else None
    try:
        code = main(argv)
    except BaseException:  # noqa: BLE001 - re-raised unless an interrupt caused it
        if not interrupts:
            raise
        print(INTERRUPTED, file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupts and code == EXIT_INTERRUPTED:  # (the studio stops on Ctrl-C: code 0)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


# Python code that a compiled library calls back (an exception there does not propagate).
CALLBACK_PACKAGES = ("llvmlite",)


def _in_swallowing_callback(frame):
    """Whether ``frame`` runs code whose exceptions its caller prints and swallows: a
    callback of a library in ``CALLBACK_PACKAGES``, a finaliser (``__del__``), or importlib's
    own code (its module locks are released by a weakref callback, which a collection can
    run anywhere)."""
    if frame is None:
        return False
    code = frame.f_code
    if code.co_name == "__del__" or code.co_filename.startswith("<frozen importlib"):
        return True
    parts = os.path.normpath(code.co_filename).split(os.sep)
    return any(package in parts for package in CALLBACK_PACKAGES)


def _interrupt_again_soon(delay=0.05):
    """SIGINT to this process after ``delay`` seconds, from a timer thread."""
    import signal
    import threading

    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()


def _in_main_thread():
    """Whether this is the main thread (the only one that may set signal handlers)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def _run(argv, stdout, stderr):
    from .imaging.choices import PaintError
    from .imaging.files import FileError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args, stdout, stderr)
    except (UsageError, PaintError, FileError) as exc:
        print(f"gaussmix {args.command}: error: {exc}", file=stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        sentence = missing_extra(exc)
        if sentence is None:
            raise
        print(f"gaussmix {args.command}: error: {sentence}", file=stderr)
        return EXIT_USAGE
    except OSError as exc:  # the disk or the system refused a read or a write
        print(f"gaussmix {args.command}: error: {os_error_sentence(exc)}", file=stderr)
        return EXIT_USAGE
    return 0


def os_error_sentence(exc):
    """One sentence for an ``OSError`` that a read or write met (a full disk, a folder that
    may not be written, a file that vanished)."""
    if exc.errno is None:  # raised with a sentence of its own
        return str(exc)
    where = f" {exc.filename!r}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return (f"the disk is full (writing{where}); free some space or pass --out a folder "
                "on another disk.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not allowed to write{where}; pass --out a folder you may write to."
    reason = exc.strerror or str(exc)
    return f"cannot read or write{where}: {reason[0].lower() + reason[1:]}; check the path."


if __name__ == "__main__":
    raise SystemExit(console_main())
