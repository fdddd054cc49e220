"""The `ratchet` commands: each takes the parsed arguments, calls the Python API, prints.

`ratchet.cli` parses the command line without importing any of this, so `ratchet --help`
starts at once.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ratchet import examples
from ratchet.config import TASK_FILE, TaskConfig, load_config
from ratchet.decide import explain
from ratchet.engine import Progress
from ratchet.errors import UsageError
from ratchet.execute.gitrepo import GitRepo
from ratchet.knobs.initfile import (
    discover_knobs,
    observe_command,
    read_repository,
    space_text,
    summary,
    task_file_text,
)
from ratchet.records import BASELINE, IMPORTED, KEEP, StudyRecord
from ratchet.reports.export import export
from ratchet.reports.safe_text import printable
from ratchet.reports.summary import better_by, goal_of, metric_name
from ratchet.reports.view import (
    LOG_HEADERS,
    LiveReporter,
    PlainReporter,
    experiment_cells,
    fmt,
)
from ratchet.store.database import Store, default_url
from ratchet.study import Study, open_study
from ratchet.units import format_duration


def _open(args: argparse.Namespace, create: bool = False, proposer: str | None = None,
          seed: int | None = None) -> Study:
    settings = {"model": getattr(args, "model", None), "base_url": getattr(args, "base_url", None),
                "fresh": getattr(args, "fresh", False)}
    return open_study(args.repo, args.study, storage=args.storage, proposer=proposer,
                      seed=seed, create=create, settings=settings)


# commands


def cmd_init(args: argparse.Namespace) -> int:
    repo = GitRepo.find(Path(args.repo))
    target = repo.root / TASK_FILE
    if target.exists() and not args.force:
        raise UsageError(f"{target} already exists (use --force to overwrite)")
    found = read_repository(repo, args.command)
    if found.command and not args.no_run:
        print(f"ratchet init: running `{printable(found.command)}` twice in the sandbox (at most "
              f"{args.observe_timeout:g}s each; --no-run skips this)", flush=True)
        found = read_repository(repo, args.command,
                                observe_command(repo, found.command, args.observe_timeout))
    target.write_text(task_file_text(repo, found))
    print(f"wrote {target}:")
    for line in summary(found):
        print(f"  {printable(line)}")
    print(f"review it, commit it (git add {TASK_FILE} && git commit), then `ratchet run`")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    study = _open(args, create=True, proposer=args.proposer, seed=args.seed)
    print(f"ratchet: study {printable(study.name)} ({study.record.proposer}) on {study.repo.root}, "
          f"base {study.record.base_commit[:10]}", flush=True)
    progress = _with_reporter(args.plain, lambda reporter: study.run(
        max_experiments=args.max_experiments, max_time_s=args.max_time, max_usd=args.max_usd,
        parallel=args.parallel, gpus=gpus, reporter=reporter, executor=args.executor,
        address=args.address))
    if progress.stop_reason == "the output was closed":
        print(f"ratchet: output closed (broken pipe): study {printable(study.name)} stopped after "
              f"{progress.experiments} experiments; the running evaluations finished and were "
              "recorded (`ratchet run` resumes it)", file=sys.stderr)
        return 1
    _print_summary(study, progress)
    return 0


def _with_reporter(plain: bool, body):  # type: ignore[no-untyped-def]
    if plain or not sys.stdout.isatty():
        return body(PlainReporter())
    with LiveReporter() as reporter:
        return body(reporter)


def _print_summary(study: Study, progress: Progress) -> None:
    best = progress.best
    print(f"ratchet: stopped: {progress.stop_reason}")
    if best is not None and progress.baseline is not None:
        print(f"ratchet: best {fmt(best.value)} (experiment {best.number}), baseline "
              f"{fmt(progress.baseline)}, {progress.experiments} experiments, "
              f"${progress.spent_usd:.4f}, {format_duration(progress.elapsed_s)}")
        print(printable(f"ratchet: `ratchet best --study {study.name}` shows the diff; "
                        f"branch ratchet/{study.name} holds the kept chain"))


def cmd_log(args: argparse.Namespace) -> int:
    study = _open(args)
    rows = [experiment_cells(e, study.config.minimize) for e in study.experiments()]
    if args.plain or not sys.stdout.isatty():
        print("\t".join(LOG_HEADERS))
        for row in rows:
            print("\t".join(row))
        return 0
    table = Table(*LOG_HEADERS, title=Text(printable(
        f"{study.name}: {study.config.metric.name} ({study.config.metric.goal})")))
    for row in rows:
        table.add_row(*map(Text, row))  # Text: a description's "[...]" is not rich markup
    Console().print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    study = _open(args)
    e = study.experiment(args.number)
    print(f"experiment {e.number} of study {printable(study.name)}: {e.status} ({e.kind})")
    print(f"description: {printable(e.description)}")
    if e.reason:
        print(f"reason: {printable(e.reason)}")
    print(f"{study.config.metric.name}: {fmt(e.value)}  runs: {e.values}  better by: "
          f"{fmt(better_by(e, study.config.minimize), signed=True)}  holdout: {fmt(e.holdout)}")
    if e.screens:
        print("short runs: " + ", ".join(f"{fmt(v)} at horizon {h:g} ({wall:.1f}s)"
                                         for h, v, wall in e.screens))
    print(f"wall {e.wall_s:.2f}s  cpu {e.cpu_s:.2f}s  peak memory {e.peak_mem_mb:.0f} MB  "
          f"cost ${e.cost_usd:.4f}")
    if e.tokens_in or e.tokens_out:
        print(f"tokens: {e.tokens_in} in ({e.tokens_cached} cached), {e.tokens_out} out, "
              f"${e.llm_usd:.4f} of the cost")
    for key in ("hypothesis", "expected_effect", "model", "ended"):
        if e.rationale and e.rationale.get(key):
            print(f"{key.replace('_', ' ')}: {printable(str(e.rationale[key]))}")
    if e.secondary:
        print("secondary: " + printable(", ".join(f"{k}={fmt(v)}"
                                                  for k, v in e.secondary.items())))
    if e.decision:
        print(f"decision: {printable(explain(e.decision, study.config.metric.name))}")
    if e.commit:
        parent = "" if e.kind == BASELINE else f" (parent {e.parent_commit})"
        print(f"commit: {e.commit}{parent}")
    print("--- diff ---")
    print(printable(e.diff.rstrip(), multiline=True) or "(no change)")
    if e.log_path and Path(e.log_path).exists():
        tail = Path(e.log_path).read_text(errors="replace").splitlines()[-args.lines:]
        print(f"--- log tail ({printable(e.log_path)}) ---")
        print(printable("\n".join(tail), multiline=True))
    return 0


def cmd_try(args: argparse.Namespace) -> int:
    study = _open(args, create=True)
    if args.patch is None:
        patch = study.repo.working_tree_diff()
        source = "the working tree's uncommitted edits"
    elif args.patch == "-":
        source = "standard input"
        patch = _text_patch(sys.stdin.buffer.read(), source)
    else:
        path = Path(args.patch)
        if not path.is_file():
            raise UsageError(f"patch file {args.patch!r} not found")
        source = args.patch
        patch = _text_patch(path.read_bytes(), source)
    if not patch.strip():
        raise UsageError(f"nothing to try: {source} hold no change")
    description = args.message or f"user change ({source})"
    experiment = _with_reporter(args.plain, lambda r: study.try_patch(
        patch, description, r, onto_base=args.onto == "base"))
    print(f"ratchet: experiment {experiment.number}: {experiment.status} "
          f"{study.config.metric.name}={fmt(experiment.value)} "
          f"better by {fmt(better_by(experiment, study.config.minimize), signed=True)}"
          + (f" ({printable(experiment.reason)})" if experiment.reason else ""))
    return 0


def _text_patch(data: bytes, source: str) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise UsageError(f"{source} is not a text patch (it holds binary data); give a unified "
                         "diff, e.g. from `git diff`")
    return text


def cmd_best(args: argparse.Namespace) -> int:
    study = _open(args)
    best = study.publish_best()
    e = best.experiment
    print(f"best: experiment {e.number}, {study.config.metric.name} {fmt(e.value)}, holdout "
          f"{fmt(e.holdout)} ({printable(e.description)})")
    print(printable(f"branch: {best.branch}  (merge it with `git merge {best.branch}`)"))
    print(printable(best.diff.rstrip(), multiline=True)
          or "(the baseline is still the best: no change)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    study = _open(args)
    text = export(study.experiments(), args.format, study.config.metric.name)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    repo = GitRepo.find(Path(args.repo))
    knobs, held_back = discover_knobs(repo)
    if not knobs and not held_back:
        raise UsageError("no knobs found (module-level UPPER_CASE constants in the editable "
                         "files, or settings in the [knobs] files)")
    if not args.llm:
        sys.stdout.write(space_text(knobs, held_back))
        return 0
    from ratchet.agent.space import write_space
    from ratchet.config import AgentConfig
    from ratchet.llm.connect import ModelSpec, connect
    from ratchet.llm.prices import cost_usd, price_of

    config = _task_config(repo)
    agent = config.agent if config else AgentConfig()
    model = args.model or agent.model
    if not model:
        raise UsageError("space --llm needs a model: --model NAME or [agent].model")
    spec = ModelSpec.parse(model)
    files = {k.path: (repo.root / k.path).read_text() for k in knobs}
    result = write_space(connect(spec, args.base_url or agent.base_url, agent.api_key_env),
                         files, knobs, tuple(files))
    sys.stdout.write(printable(result.toml({k.name: k for k in knobs}), multiline=True))
    usage = result.episode.usage
    print(f"ratchet: {spec}: {usage.input_tokens} tokens in, {usage.output_tokens} out, "
          f"${cost_usd(usage, price_of(spec.name, agent.prices)):.4f}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ratchet.bench import BenchPlan, parse_methods, run_bench

    plan = BenchPlan(args.name, parse_methods(args.methods),
                     [args.seed + i for i in range(args.seeds)], args.budget_usd,
                     args.budget_experiments, args.base_url, args.parallel)
    studies = run_bench(args.repo, plan, args.storage,
                        reporter=lambda _: PlainReporter() if args.plain else None,
                        announce=lambda text: print(f"ratchet bench: {printable(text)}",
                                                    flush=True))
    print(f"ratchet bench: {len(studies)} studies done; `ratchet report --bench {plan.name}`")
    return 0


def cmd_generalize(args: argparse.Namespace) -> int:
    from ratchet.bench import bench_studies
    from ratchet.generalize import generalize_study

    horizons = _horizons(args.horizons)
    store = _store(args)
    records = bench_studies(store, args.bench)
    if not records:
        raise UsageError(f"no studies of bench {args.bench!r} (run `ratchet bench` first)")
    for record in records:
        study = open_study(args.repo, record.name, storage=args.storage, create=False)
        generalize_study(study, horizons, args.runs,
                         lambda text: print(f"ratchet generalize: {printable(text)}",
                                            flush=True))
    return 0


def _horizons(text: str) -> list[float]:
    try:
        horizons = [float(h) for h in text.split(",") if h.strip()]
    except ValueError:
        raise UsageError(f"--horizons {text!r}: expected numbers such as 1,2,4") from None
    if not horizons or any(h <= 0 for h in horizons):
        raise UsageError(f"--horizons {text!r}: expected positive numbers such as 1,2,4")
    return horizons


def cmd_report(args: argparse.Namespace) -> int:
    from ratchet.reports.data import report_data
    from ratchet.reports.report import write_report

    store = _store(args)
    repo = GitRepo.find(Path(args.repo))
    references = [_study_named(store, name, "--reference") for name in args.reference]
    studies, bench = _reported(store, args, repo)
    if not studies and not references:
        raise UsageError("nothing to report: no study in this repository yet (start one with "
                         "`ratchet run`)")
    metric, goal = _metric_of(studies, references, _task_config(repo))
    output = Path(args.output)
    pngs = write_report(report_data(store, studies, references, metric, goal, bench), output)
    print(f"ratchet report: wrote {output} and {len(pngs)} figures in {pngs[0].parent}"
          if pngs else f"ratchet report: wrote {output}")
    return 0


def _reported(store: Store, args: argparse.Namespace,
              repo: GitRepo) -> tuple[list[StudyRecord], str | None]:
    """What a report covers, and the bench's name when that is a bench: the bench named, the
    study named, or the repository's latest study (its whole bench, if it belongs to one)."""
    from ratchet.bench import bench_studies

    if args.study:
        return [_study_named(store, args.study, "--study")], None
    bench = args.bench
    if not bench:
        own = [s for s in store.studies(str(repo.root)) if s.proposer != IMPORTED]
        if not own or not own[-1].settings.get("bench"):
            return own[-1:], None
        bench = str(own[-1].settings["bench"])
    studies = bench_studies(store, bench)
    if not studies:
        raise UsageError(f"no studies of bench {bench!r}")
    return studies, bench


def _study_named(store: Store, name: str, option: str) -> StudyRecord:
    record = store.get_study(name)
    if record is None:
        raise UsageError(f"{option} {name!r}: no such study")
    return record


def _metric_of(studies: list[StudyRecord], references: list[StudyRecord],
               config: TaskConfig | None) -> tuple[str, str]:
    """The metric and goal a report speaks of: the reported studies' own task file's, else
    the first reference's as it was logged, else the checkout's."""
    if studies and metric_name(studies[0]):
        return str(metric_name(studies[0])), goal_of(studies[0])
    settings = references[0].settings if references else {}
    if "metric" in settings or config is None:
        return str(settings.get("metric", "metric")), str(settings.get("goal", "minimize"))
    return config.metric.name, config.metric.goal


def cmd_serve(args: argparse.Namespace) -> int:
    from ratchet.reports.serve import make_server

    try:
        server = make_server(_store(args), args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = server.server_address[:2]
    print(f"ratchet serve: http://{host}:{port}/ (read-only; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _store(args: argparse.Namespace) -> Store:
    return Store(args.storage or default_url(GitRepo.find(Path(args.repo)).root))


def _task_config(repo: GitRepo) -> TaskConfig | None:
    """The repository's task file, when it has one."""
    return load_config(repo.root) if (repo.root / TASK_FILE).is_file() else None


def cmd_import(args: argparse.Namespace) -> int:
    from ratchet.importer import parse_results, study_record, to_experiments

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"results log {args.file!r} not found")
    log = parse_results(path.read_text(errors="replace"), path.name)
    repo = GitRepo.find(Path(args.repo))
    config = _task_config(repo)
    goal = args.goal or (config.metric.goal if config else "minimize")
    task = args.task or (config.name if config else repo.root.name)
    name = args.study or "".join(c if c.isalnum() or c in "-_." else "-" for c in path.stem)
    experiments = to_experiments(log)
    record = _store(args).create_study(
        study_record(log, name, task, str(repo.root), path.resolve(), goal), experiments)
    kept = [e for e in experiments if e.status == KEEP]
    print(f"imported {len(experiments)} rows as study {printable(record.name)} "
          f"({printable(log.metric)}, {goal}): "
          f"{len(kept)} keep, {sum(e.status == 'discard' for e in experiments)} discard, "
          f"{sum(e.status == 'crash' for e in experiments)} crash; last kept "
          f"{fmt(kept[-1].value if kept else None)}")
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from ratchet.mcp_server import serve

    serve(args.repo, args.study, args.storage)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    source = examples.path(args.example)
    target = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ratchet-demo-"))
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty")
    shutil.copytree(source, target, dirs_exist_ok=True)
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=ratchet demo", "-c",
                    "user.email=demo@localhost", "commit", "-qm", f"{args.example} example"]):
        subprocess.run(["git", *command], cwd=target, check=True)
    print(f"ratchet demo: the {args.example} example is now a git repository at {target}")
    budget = args.max_experiments or examples.DEMO_EXPERIMENTS[args.example]
    study = open_study(target, f"demo-{args.proposer}", proposer=args.proposer, seed=args.seed)
    progress = _with_reporter(args.plain, lambda r: study.run(
        max_experiments=budget, parallel=args.parallel, reporter=r))
    _print_summary(study, progress)
    print("\nwhere to look:")
    for command in ("log", "show 0", "best", "export"):
        print(f"  cd {target} && {_ratchet_executable()} {command}")
    return 0


def _ratchet_executable() -> str:
    """How to call ratchet again: plain `ratchet` when it is on PATH, else its full path."""
    installed = Path(sys.executable).parent / "ratchet"
    on_path = shutil.which("ratchet")
    if on_path and Path(on_path).resolve() == installed.resolve():
        return "ratchet"
    return str(installed) if installed.exists() else "ratchet"
