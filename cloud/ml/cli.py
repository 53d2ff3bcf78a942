"""``twincloud model train``: a model package from a CSV or Parquet file or from a device's stored history.

Exit status: 0 the package was written, 1 a runtime problem (the database unreachable, the train extra not
installed, the output not writable), 2 bad input (a missing or non-numeric column, too few rows, a single class,
a file that is neither CSV nor Parquet), each reason printed on stderr. Progress goes to stderr, the card's
summary to stdout.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import InputError
from shared.features import STATISTICS
from shared.modelpackage import MODEL_NAME_PATTERN

if TYPE_CHECKING:
    from cloud.ml.data import Table
    from cloud.ml.progress import Progress

__all__ = ["register"]

DEFAULT_FEATURES = ",".join(STATISTICS)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``model`` command group."""
    p = subparsers.add_parser("train", help="train a model for the edges; writes a .twinmodel package",
                              description="Train an anomaly model or a classifier, quantize it to INT8 and write a "
                              "model package with its card. Progress on stderr, the card's summary on stdout.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, metavar="FILE", help="a CSV file with a header line")
    source.add_argument("--parquet", type=Path, metavar="FILE", help="a Parquet file")
    source.add_argument("--device", metavar="D", help="a device's history stored in the cloud (with --from, --to)")
    p.add_argument("--from", dest="start", metavar="TIME", help="history: first frame's time (ISO 8601 or epoch s)")
    p.add_argument("--to", dest="end", metavar="TIME", help="history: last frame's time (ISO 8601 or epoch s)")
    p.add_argument("--max-rows", type=int, default=1_000_000, help="history: at most this many frames (1,000,000)")
    p.add_argument("--kind", required=True, choices=["anomaly", "classifier"])
    p.add_argument("--name", required=True, help="the model's name: letters, digits and . _ - (at most 64)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.twinmodel", help="where to write the package")
    p.add_argument("--sensors", metavar="A,B[UNIT],...",
                   help="sensor columns, each with its unit in brackets where known (default: every numeric one)")
    p.add_argument("--label-column", metavar="NAME", help="labels: the class (classifier) or 0 = normal (anomaly)")
    p.add_argument("--time-column", metavar="NAME", help="file: the time column (default: ts, timestamp or time)")
    p.add_argument("--mode", choices=["frame", "window"], default="frame",
                   help="frame: each row is an input; window: features over sliding windows")
    p.add_argument("--window", type=int, metavar="N", help="window: readings in a window")
    p.add_argument("--step", type=int, metavar="N", help="window: readings from one window to the next (default N)")
    p.add_argument("--interval", type=float, metavar="S",
                   help="window: seconds between readings (default: the data's median interval)")
    p.add_argument("--features", metavar="F,F,...",
                   help=f"window: features per sensor (default {DEFAULT_FEATURES}); also band:LO-HI, "
                   "relband:LO-HI and log:F, see docs/ml.md")
    p.add_argument("--threshold-quantile", type=float, default=0.99, metavar="Q",
                   help="anomaly without labels: the training scores' quantile that becomes the threshold (0.99)")
    p.add_argument("--eval-fraction", type=float, default=0.3, metavar="F", help="rows held out to evaluate (0.3)")
    p.add_argument("--hidden", metavar="N,N,...", help="hidden layer sizes (anomaly 128,64,128; classifier 256,256)")
    p.add_argument("--epochs", type=int, default=200, help="at most this many passes over the data (200)")
    p.add_argument("--budget", type=float, default=600.0, metavar="S", help="stop fitting after this long (600 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--description", default="", help="a line for the card")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=_train)


def _when(text: str | None, flag: str) -> float:
    if text is None:
        raise InputError(f"--device needs {flag} (ISO 8601, e.g. 2026-01-31T08:00:00Z, or epoch seconds)")
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{flag} {text!r}: not an ISO 8601 time or epoch seconds") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _spec(args: argparse.Namespace) -> Any:
    from cloud.ml.train import TrainSpec

    problems = []
    if not re.match(MODEL_NAME_PATTERN, args.name):
        problems.append(f"--name {args.name!r}: a model name is letters, digits and . _ - (at most 64), starting "
                        "with a letter or digit")
    if args.mode == "window":
        if args.window is None:
            problems.append("--mode window needs --window N (readings in a window)")
    elif args.window is not None or args.step is not None or args.features is not None:
        problems.append("--window, --step and --features need --mode window")
    if not 0 < args.threshold_quantile < 1:
        problems.append(f"--threshold-quantile must be between 0 and 1 (got {args.threshold_quantile})")
    if not 0 < args.eval_fraction < 1:
        problems.append(f"--eval-fraction must be between 0 and 1 (got {args.eval_fraction})")
    if not 1 <= args.epochs <= 100_000:
        problems.append(f"--epochs must be 1..100000 (got {args.epochs})")
    hidden = None
    if args.hidden:
        try:
            hidden = tuple(int(n) for n in args.hidden.split(","))
        except ValueError:
            hidden = ()
        if not hidden or not all(1 <= n <= 4096 for n in hidden):
            problems.append(f"--hidden {args.hidden!r}: give layer sizes 1..4096 separated by commas, e.g. 128,64,128")
    if problems:
        raise InputError("; ".join(problems))
    features = tuple(f.strip() for f in (args.features or DEFAULT_FEATURES).split(",") if f.strip())
    if args.mode == "frame":
        features = ()
    return TrainSpec(kind=args.kind, name=args.name, mode=args.mode, window=args.window,
                     step=args.step or args.window, interval_s=args.interval, features=features,
                     threshold_quantile=args.threshold_quantile, eval_fraction=args.eval_fraction, hidden=hidden,
                     max_epochs=args.epochs, budget_s=args.budget, seed=args.seed, description=args.description)


def _table(args: argparse.Namespace, progress: Progress) -> Table:
    from cloud.ml.data import load_file, load_history, parse_sensors

    sensors = parse_sensors(args.sensors)
    if args.device is None:
        if args.start is not None or args.end is not None:
            raise InputError("--from and --to select a device's history; a file is read whole")
        if args.csv is not None:
            return load_file(args.csv, "csv", sensors, args.label_column, args.time_column, progress)
        return load_file(args.parquet, "parquet", sensors, args.label_column, args.time_column, progress)
    if args.time_column:
        raise InputError("--time-column is for files; a device's frames carry their times")
    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    from cloud.cli import _with_storage  # the storage every twincloud command opens (cloud.cli imports this module)

    found: list[Table] = []

    async def read(storage: Any) -> int:
        found.append(await load_history(storage, args.device, start, end, sensors, args.label_column,
                                        args.max_rows, progress))
        return 0

    _with_storage(args, read)
    return found[0]


def _write(path: Path, data: bytes) -> None:
    """Write the package whole or not at all: a temporary file beside it, then renamed over it."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"--out {path}: the folder {folder} does not exist")
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _train(args: argparse.Namespace) -> int:
    try:
        from pydantic import ValidationError

        from cloud.ml.progress import Progress
        from cloud.ml.train import train
        from shared.modelpackage import sha256_hex
        from shared.validation import validation_problems
    except ModuleNotFoundError as exc:
        return _no_extra(exc)
    progress = Progress(quiet=args.quiet)
    try:
        spec = _spec(args)
        table = _table(args, progress)
        result = train(table, spec, progress)
    except ModuleNotFoundError as exc:
        return _no_extra(exc)
    except ValidationError as exc:  # a name or unit the card or schema refuses
        raise InputError(validation_problems(exc)) from None
    try:
        _write(args.out, result.package)
    except OSError as exc:
        print(f"twincloud: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for note in result.notes:
        progress.say(f"note: {note}")
    print(result.card_md, end="")
    print(f"wrote {args.out}: {len(result.package):,} bytes, sha256 {sha256_hex(result.package)}")
    return 0


def _no_extra(exc: ModuleNotFoundError) -> int:
    if exc.name is not None and exc.name.partition(".")[0] in ("cloud", "shared", "edge"):
        raise exc
    print(f"twincloud: model train needs {exc.name}, which is not installed: pip install 'twinedge[train]'",
          file=sys.stderr)
    return 1
