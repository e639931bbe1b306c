"""``kerasprune`` on the command line: the same functions as the Python API.

    kerasprune experiment experiments/mnist_lenet5.yaml [--budget cpu|full] [--data-dir D]
    kerasprune demo [--data-dir D]
    kerasprune report experiments/results/<name>.json
    kerasprune models | datasets

Input errors print one line (what, where, how to fix) and exit with status 2; an
interrupted experiment says how to resume it.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from importlib import resources
from pathlib import Path

from .errors import KerasPruneError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kerasprune", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="tfds data dir (default: $TFDS_DATA_DIR, else tfds' own)")
        p.add_argument("--download", action="store_true",
                       help="let tfds download a dataset that is not prepared (needs internet)")
        p.add_argument("--out", default="saved_models", help="where models go (default: saved_models)")

    exp = sub.add_parser("experiment", help="run or resume an experiment config")
    exp.add_argument("config", help="path to experiments/<name>.yaml")
    exp.add_argument("--budget", default="cpu", help="budget section of the config (default: cpu)")
    exp.add_argument("--results-dir", help="where the JSON and report go (default: <config dir>/results)")
    exp.add_argument("--only", nargs="+", metavar="RUN", help="run only these run ids (and the baseline)")
    exp.add_argument("--fresh", action="store_true", help="rerun runs that finished earlier")
    common(exp)

    demo = sub.add_parser("demo", help="the main job: MNIST LeNet-5, pruned, exported, timed")
    common(demo)

    report = sub.add_parser("report", help="rebuild the Markdown report and plots of a results JSON")
    report.add_argument("results", nargs="+", help="experiments/results/<name>.json")

    sub.add_parser("models", help="list the model zoo")
    sub.add_parser("datasets", help="list the supported datasets")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args, argv if argv is not None else sys.argv[1:])
    except KerasPruneError as exc:
        print(f"kerasprune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kerasprune: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "models":
        from .models import ZOO

        for name, entry in sorted(ZOO.items()):
            print(f"{name:15} {entry.kind:6} {(entry.build.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.command == "datasets":
        from .data import DATASETS

        for name, spec in sorted(DATASETS.items()):
            print(f"{name:8} tfds '{spec.tfds_name}', {spec.kind}, {spec.num_classes} classes, "
                  f"reported split '{spec.test_split}'")
        return 0

    if args.command == "report":
        from .experiment.report import rebuild_report

        for path in args.results:
            print(f"kerasprune: wrote {rebuild_report(path)}")
        return 0

    from .experiment import run_experiment

    if args.command == "demo":
        with resources.as_file(resources.files("kerasprune.experiment") / "demo.yaml") as config:
            results = run_experiment(
                config, data_dir=args.data_dir, out_dir=args.out, download=args.download,
                results_dir=Path(args.out) / "demo", command="kerasprune demo",
            )
        print(f"kerasprune demo: report at {Path(args.out) / 'demo' / 'demo.md'}")
        return 0 if results["runs"] else 1

    run_experiment(
        args.config, budget=args.budget, data_dir=args.data_dir, out_dir=args.out,
        results_dir=args.results_dir, only=args.only, fresh=args.fresh,
        download=args.download, command="kerasprune " + shlex.join(argv),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
