"""``kerasprune`` on the command line: the same functions as the Python API.

    kerasprune experiment experiments/mnist_lenet5.yaml [--budget cpu|full] [--data-dir D]
    kerasprune demo [--data-dir D]
    kerasprune report experiments/results/<name>.json
    kerasprune seeds experiments/results/<name>.json experiments/results/<name>.seed1.json ...
    kerasprune bench-train experiments/adaptive_mnist.yaml [--sparsity 0.8]
    kerasprune sparse-study [--sparsity 0.9]
    kerasprune latency-study [--model resnet20] [--ratio 0.5]
    kerasprune serving-load [--requests 100000] [--threads 8]
    kerasprune bench MODEL... [--target tf-cpu tflite ...] [--baseline NAME] [--json OUT]
    kerasprune models | datasets

Input errors print one line (what, where, how to fix) and exit with status 2; an
interrupted experiment says how to resume it.  Arguments are parsed and checked before
TensorFlow is imported (``--help`` and a misspelt path answer at once), and TensorFlow's
import-time banners are kept out of the output (set TF_CPP_MIN_LOG_LEVEL to see them).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from importlib import resources
from pathlib import Path

from .errors import ConfigError, KerasPruneError

#: positional arguments that name files to read, checked before TensorFlow is imported
_INPUT_FILES = {"experiment": ("config", "experiment config", "a YAML file under experiments/"),
                "tune": ("config", "experiment config", "a YAML file under experiments/ with a tune block"),
                "bench-train": ("config", "experiment config", "a YAML file under experiments/"),
                "report": ("results", "results file", "experiments/results/<name>.json"),
                "seeds": ("results", "results file", "experiments/results/<name>.json")}


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
    exp.add_argument("--seed", type=int,
                     help="repeat with this seed instead of the config's (results as <name>.seed<N>)")
    common(exp)

    tune = sub.add_parser("tune", help="run a config's methods, then search its tune block with Keras Tuner")
    tune.add_argument("config", help="path to experiments/tune_<name>.yaml")
    tune.add_argument("--budget", default="cpu", help="budget section of the config (default: cpu)")
    tune.add_argument("--results-dir", help="where the JSON and report go (default: <config dir>/results)")
    common(tune)

    demo = sub.add_parser("demo", help="the main job: MNIST LeNet-5, pruned, exported, timed")
    common(demo)

    report = sub.add_parser("report", help="rebuild the Markdown report and plots of a results JSON")
    report.add_argument("results", nargs="+", help="experiments/results/<name>.json (or <name>.tune.json)")

    seeds = sub.add_parser("seeds", help="one experiment over seeds: spread and paired differences")
    seeds.add_argument("results", nargs="+", help="the results JSONs of one experiment, one per seed")
    seeds.add_argument("--out", help="write the Markdown here (default: print it)")
    seeds.add_argument("--pair", nargs=2, action="append", default=[], metavar=("RUN", "AGAINST"),
                       help="also compare RUN with AGAINST seed by seed (repeatable)")

    bench = sub.add_parser("bench", help="time models side by side (Keras, SavedModel, .tflite)")
    bench.add_argument("models", nargs="+", metavar="MODEL",
                       help="a .keras/.h5/.tflite file or SavedModel dir, optionally NAME=PATH")
    bench.add_argument("--target", nargs="+", default=None, metavar="T",
                       help="tf-cpu, tf-gpu, tflite[@threads], tflite-sparse[@threads], "
                            "android[@threads] (default: tf-cpu tf-gpu tflite)")
    bench.add_argument("--baseline", help="model the ratios are taken to (default: the first)")
    bench.add_argument("--json", help="write OUT.json, OUT.md and OUT.png (default: print Markdown)")
    bench.add_argument("--rounds", type=int, default=7, help="interleaved rounds, >= 2 (default: 7)")
    bench.add_argument("--block-seconds", type=float, default=0.25,
                       help="minimum seconds per model per round (default: 0.25)")
    bench.add_argument("--throughput-batch", type=int, default=32,
                       help="batch size for throughput, 0 to skip (default: 32)")
    bench.add_argument("--adb", default="adb", help="adb executable for the android target")
    bench.add_argument("--android-serial", help="device serial when several are attached")
    bench.add_argument("--android-binary",
                       help="local benchmark_model built for the phone, pushed before timing")
    bench.add_argument("--unsafe", action="store_true",
                       help="load models whose Lambda layers carry Python code, and so run it "
                            "(only for files you trust)")

    train = sub.add_parser("bench-train",
                           help="training-step time: dense vs tfmot vs kerasprune, side by side")
    train.add_argument("config", help="experiment config whose data, model and optimizer are used")
    train.add_argument("--budget", default="cpu", help="budget section of the config (default: cpu)")
    train.add_argument("--sparsity", type=float, default=0.8, help="in (0, 1) (default: 0.8)")
    train.add_argument("--rounds", type=int, default=5, help="interleaved rounds, >= 2 (default: 5)")
    train.add_argument("--steps", type=int, default=40, help="steps per block, >= 5 (default: 40)")
    train.add_argument("--results-dir", default="experiments/results")
    train.add_argument("--data-dir", help="tfds data dir (default: $TFDS_DATA_DIR, else tfds' own)")

    study = sub.add_parser("sparse-study",
                           help="sparse-format TFLite vs dense: size, outputs, speed and why")
    study.add_argument("--sparsity", type=float, default=0.9, help="1x1 conv sparsity (default: 0.9)")
    study.add_argument("--results-dir", default="experiments/results",
                       help="where sparse_inference.json/.md/.png go (default: experiments/results)")
    study.add_argument("--out", default="saved_models", help="where the models go (default: saved_models)")

    latency = sub.add_parser("latency-study",
                             help="dense vs structurally pruned convnet: TF-CPU and TFLite latency")
    latency.add_argument("--model", default="resnet20", choices=["resnet20", "resnet56", "mobilenetv2"])
    latency.add_argument("--ratio", type=float, default=0.5, help="channels removed per set (default: 0.5)")
    latency.add_argument("--results-dir", default="experiments/results",
                         help="where structured_<model>.json/.md/.png go (default: experiments/results)")
    latency.add_argument("--out", default="saved_models", help="where the models go (default: saved_models)")

    load = sub.add_parser("serving-load", help="the inference-time pruner under concurrent requests")
    load.add_argument("--requests", type=int, default=100_000, help="batches sent (default: 100000)")
    load.add_argument("--threads", type=int, default=8, help="client threads (default: 8)")
    load.add_argument("--results-dir", default="experiments/results",
                      help="where serving_load.json/.md go (default: experiments/results)")

    sub.add_parser("models", help="list the model zoo")
    sub.add_parser("datasets", help="list the supported datasets")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _check_inputs(args)
        _import_tensorflow_quietly()
        return _dispatch(args, argv if argv is not None else sys.argv[1:])
    except KerasPruneError as exc:
        print(f"kerasprune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kerasprune: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


def _check_inputs(args: argparse.Namespace) -> None:
    """Files that must exist, before seconds go into importing TensorFlow."""
    if args.command not in _INPUT_FILES:
        return
    attribute, noun, expected = _INPUT_FILES[args.command]
    paths = getattr(args, attribute)
    for path in [paths] if isinstance(paths, str) else paths:
        if not Path(path).is_file():
            raise ConfigError(f"{noun} '{path}' does not exist (expected {expected}; relative "
                              f"paths are taken from {Path.cwd()}).")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ banners (oneDNN, CUDA drivers) sent nowhere.

    They are written to file descriptor 2 before absl logging is set up, so only a
    redirection of the descriptor hides them; Python errors of the import still surface.
    TF_CPP_MIN_LOG_LEVEL=0 or 1 shows them, and TensorFlow's other logs.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1"):
        from . import backend  # noqa: F401
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "2":  # kerasprune's default, not a choice
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # also the cuInit error of a machine without GPU
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        from . import backend  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    # Each command imports what it uses in its branch: `models` need not load the harness.
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
            if str(path).endswith(".tune.json"):  # a search's results
                from .tuner.report import rebuild_report as rebuild_search

                print(f"kerasprune: wrote {rebuild_search(path)}")
            else:
                print(f"kerasprune: wrote {rebuild_report(path)}")
        return 0

    if args.command == "seeds":
        from .experiment.seeds import seed_summary

        summary = seed_summary(args.results, [tuple(p) for p in args.pair])
        if args.out:
            from . import files

            print(f"kerasprune: wrote {files.write_text(args.out, summary)}")
        else:
            print(summary, end="")
        return 0

    if args.command == "bench":
        return _bench(args, argv)
    if args.command == "bench-train":
        from . import files
        from .studies import train_step as training

        if not 0 < args.sparsity < 1 or args.rounds < 2 or args.steps < 5:
            raise ConfigError("bench-train: --sparsity in (0, 1), --rounds >= 2, --steps >= 5.")
        result = training.train_step_benchmark(
            args.config, budget=args.budget, sparsity=args.sparsity, rounds=args.rounds,
            steps=args.steps, data_dir=args.data_dir,
            progress=lambda line: print(line, file=sys.stderr), command="kerasprune " + shlex.join(argv))
        out = Path(args.results_dir) / f"{result['experiment']}.json"
        files.write_json(out, result)
        files.write_text(out.with_suffix(".md"), training.markdown(result))
        print(training.markdown(result))
        return 0
    if args.command == "latency-study":
        from .studies.structured_latency import run_latency_study

        if not 0 < args.ratio < 1:
            raise ConfigError("latency-study: --ratio must be in (0, 1).")
        run_latency_study(args.results_dir, model=args.model, ratio=args.ratio,
                          models_dir=args.out, command="kerasprune " + shlex.join(argv))
        print(f"kerasprune: wrote {Path(args.results_dir) / f'structured_{args.model}.md'}")
        return 0
    if args.command == "serving-load":
        from .studies.serving_load import run_load_study

        if args.requests < 1 or args.threads < 1:
            raise ConfigError("serving-load: --requests and --threads must be >= 1.")
        result = run_load_study(args.results_dir, requests=args.requests, threads=args.threads,
                                command="kerasprune " + shlex.join(argv),
                                progress=lambda line: print(line, file=sys.stderr))
        print(f"kerasprune: wrote {Path(args.results_dir) / 'serving_load.md'}")
        return 0 if result["ok"] else 1
    if args.command == "sparse-study":
        from .studies.sparse_inference import run_study

        if not 0.5 <= args.sparsity < 1:
            raise ConfigError("sparse-study: --sparsity must be in [0.5, 1).")
        run_study(args.results_dir, sparsity=args.sparsity, models_dir=args.out,
                  command="kerasprune " + shlex.join(argv))
        print(f"kerasprune: wrote {Path(args.results_dir) / 'sparse_inference.md'}")
        return 0

    if args.command == "tune":
        from .tuner.run import run_tune

        run_tune(args.config, budget=args.budget, data_dir=args.data_dir, out_dir=args.out,
                 results_dir=args.results_dir, command="kerasprune " + shlex.join(argv),
                 download=args.download)
        return 0

    from .experiment import run_experiment

    if args.command == "demo":
        with resources.as_file(resources.files("kerasprune.experiment") / "demo.yaml") as config:
            results = run_experiment(
                config, data_dir=args.data_dir, out_dir=args.out, download=args.download,
                results_dir=Path(args.out) / "demo", command="kerasprune demo",
            )
        dense = next(r for r in results["runs"] if r["method"] == "dense")
        for run in (r for r in results["runs"] if r.get("bits")):
            print(f"kerasprune demo: {Path(args.out) / 'demo' / 'cpu' / run['run'] / 'model.tflite'}: "
                  f"{run['tflite_bytes']:,} bytes ({run['tflite_gzip_bytes']:,} gzipped, "
                  f"{dense['tflite_bytes'] / run['tflite_gzip_bytes']:.0f}x smaller than the dense float32 "
                  f"file), accuracy {run['accuracy']:.4f} (dense {dense['accuracy']:.4f}); its weights:")
            for w in run["tflite_weights"]:
                print(f"  {w['op']:<18} {w['type']:<7} {w['bytes']:>8,} B  {w['weight']}")
        for run in (r for r in results["runs"] if r.get("dst_updates") is not None):
            moved = sum(u["regrown"] for u in run["dst_updates"])
            print(f"kerasprune demo: {run['run']}, sparse from the first step: accuracy "
                  f"{run['accuracy']:.4f} (dense {dense['accuracy']:.4f}), {len(run['dst_updates'])} mask "
                  f"updates moved {moved:,} weights, training FLOPs "
                  f"{run['train_flops'] / dense['train_flops']:.2f}x dense")
        peer = next((r for r in results["runs"] if r["run"].startswith("structured-uniform")), None)
        for run in (r for r in results["runs"] if r.get("rl_plans")):
            print(f"kerasprune demo: {run['run']}, the agent's widths at {run['macs'] / dense['macs']:.2f}x "
                  f"dense MACs: {', '.join(f'{k} {v}' for k, v in run['widths'].items())}; accuracy "
                  f"{run['accuracy']:.4f}" + (f" (one ratio for every layer: {peer['accuracy']:.4f})" if peer else "")
                  + f"; its search took {run['agent_seconds']:.0f} s, {100 * run['agent_share']:.0f}% of its training")
        traffic = results.get("traffic")
        for server in (traffic or {}).get("servers", []):
            tag = f"compact-{server['tag']}"
            ratio = traffic["benchmark"].get(tag, {}).get("tflite@1", {}).get("ratio")
            narrowed = server["phases"]["narrowed"]
            narrow = ", ".join(f"{k} {v}" for k, v in traffic["narrow"].items())
            print(f"kerasprune demo: serving '{server['tag']}' on traffic narrowed to {narrow}: "
                  f"{narrowed['params_at_end']:,} of {traffic['dense']['params']:,} params active "
                  f"({', '.join(f'{k} {v}' for k, v in narrowed['active_at_end'].items())}), "
                  f"accuracy {server['compact_scores']['narrowed']['accuracy']:.4f} (dense "
                  f"{traffic['dense']['scores']['narrowed']['accuracy']:.4f}), LiteRT latency "
                  f"{f'{ratio:.2f}x' if ratio is not None else '-'} dense; "
                  f"{_recovered(server['recovery'])}")
        print(f"kerasprune demo: report at {Path(args.out) / 'demo' / 'demo.md'}")
        return 0 if results["runs"] else 1

    run_experiment(
        args.config, budget=args.budget, data_dir=args.data_dir, out_dir=args.out,
        results_dir=args.results_dir, only=args.only, fresh=args.fresh,
        download=args.download, command="kerasprune " + shlex.join(argv), seed=args.seed,
    )
    return 0


def _recovered(recovery: dict) -> str:
    if recovery["batches"] is None:
        return recovery["reason"]
    return f"within 0.5 points of dense {recovery['batches']} batches after the traffic widened"


def _bench(args: argparse.Namespace, argv: list[str]) -> int:
    from . import benchmark
    from .benchmark.compare import DEFAULT_TARGETS
    from .benchmark.summary import output_paths

    if args.rounds < 2 or args.block_seconds <= 0 or args.throughput_batch < 0:
        raise ConfigError("bench: --rounds must be >= 2, --block-seconds > 0 and "
                          "--throughput-batch >= 0.")
    if args.json:
        output_paths(args.json)  # a name clash is refused before minutes of timing, not after
    result = benchmark.bench(
        args.models, args.target or DEFAULT_TARGETS, baseline=args.baseline,
        throughput_batch=args.throughput_batch or None, rounds=args.rounds,
        min_block_seconds=args.block_seconds,
        android={"adb": args.adb, "serial": args.android_serial, "binary": args.android_binary},
        progress=lambda line: print(line, file=sys.stderr),
        name=Path(args.json).stem if args.json else "bench", command="kerasprune " + shlex.join(argv),
        safe_mode=not args.unsafe)
    if args.json:
        for path in benchmark.write(result, args.json):
            print(f"kerasprune: wrote {path}")
    else:
        print(benchmark.markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
