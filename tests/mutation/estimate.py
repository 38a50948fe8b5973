"""Estimate the mutation score from a uniform random sample of the mutants.

The full `make mutate` runs every mutant of services/ and oauth2/ (about 2,200
after the filter), many hours on 2 cores. `make mutate-estimate N=150` runs a
seeded uniform sample of them instead and reports the kill rate with a 95 %
Wilson interval, overall and per package:

    python -m tests.mutation.estimate sample .mutation/session.sqlite 150 --seed 19
    cosmic-ray exec tests/mutation/cosmic-ray.toml .mutation/session.sqlite
    python -m tests.mutation.estimate report .mutation/session.sqlite

`sample` marks every pending mutant outside the sample SKIPPED ("not sampled"),
so `exec` runs only the sample. `exec` takes pending mutants in random order, so
a run stopped early still leaves a uniform (smaller) sample: `report` counts only
the mutants that ran.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections import Counter
from collections import defaultdict

from cosmic_ray.work_db import WorkDB
from cosmic_ray.work_db import use_db
from cosmic_ray.work_item import TestOutcome
from cosmic_ray.work_item import WorkerOutcome
from cosmic_ray.work_item import WorkResult

NOT_SAMPLED = "not sampled"
# Sampled, but left out when the time ran out (see `defer`).
DEFERRED = "not run: deferred"


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound near 0 and 1, unlike p +- 2se)."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def sample(work_db: WorkDB, size: int, seed: int) -> tuple[int, int]:
    """Keep a seeded uniform sample of the pending mutants; return (kept, pending)."""
    done = {job_id for job_id, _ in work_db.results}
    pending = sorted(item.job_id for item in work_db.work_items if item.job_id not in done)
    # A reproducible sample, not a secret.
    chooser = random.Random(seed)  # noqa: S311
    kept = set(chooser.sample(pending, min(size, len(pending))))
    work_db.set_multiple_results(
        [job_id for job_id in pending if job_id not in kept],
        WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=NOT_SAMPLED),
    )
    return len(kept), len(pending)


def defer(work_db: WorkDB, package: str) -> int:
    """Leave the pending mutants of a package out of this run; return how many.

    For a package whose stratum is too small in a run cut short: run its share
    first, the others stay a uniform (smaller) sample of their own package.
    """
    done = {job_id for job_id, _ in work_db.results}
    deferred = [
        item.job_id
        for item in work_db.work_items
        if item.job_id not in done and package_of(str(item.mutations[0].module_path)) == package
    ]
    work_db.set_multiple_results(
        deferred, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=DEFERRED)
    )
    return len(deferred)


def package_of(module_path: str) -> str:
    return module_path.rsplit("/", 1)[0] + "/"


def report(work_db: WorkDB) -> str:
    """The sample's outcome per package and overall, with the survivors listed."""
    results = dict(work_db.results)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    for item in work_db.work_items:
        (mutation,) = item.mutations
        package = package_of(str(mutation.module_path))
        result = results.get(item.job_id)
        if result is None:
            outcome = "not run"
        elif result.worker_outcome == WorkerOutcome.SKIPPED:
            outcome = {NOT_SAMPLED: "sampled out", DEFERRED: "not run"}.get(
                result.output or "", "filtered"
            )
        elif result.worker_outcome != WorkerOutcome.NORMAL:
            outcome = f"error ({result.worker_outcome.value})"
        elif result.test_outcome == TestOutcome.SURVIVED:
            outcome = "survived"
            survivors.append(
                f"{mutation.module_path}:{mutation.start_pos[0]} {mutation.operator_name}"
                f" #{mutation.occurrence} ({item.job_id})"
            )
        elif result.output == "timeout":  # cosmic-ray's whole output for a timed-out run
            outcome = "killed (timeout)"
        else:
            outcome = "killed"
        for key in (package, "all"):
            counts[key][outcome] += 1
    lines = []
    for key in sorted(counts, key=lambda k: (k == "all", k)):
        c = counts[key]
        killed = c["killed"] + c["killed (timeout)"]
        ran = killed + c["survived"]
        low, high = wilson(killed, ran)
        total = sum(c.values())
        lines.append(
            f"{key}: {total} mutants, {c['filtered']} filtered, {c['sampled out']} sampled out,"
            f" {c['not run']} not run; ran {ran}: {killed} killed"
            f" ({c['killed (timeout)']} by timeout), {c['survived']} survived"
            + (f" -> {killed / ran:.1%} (95 % CI {low:.1%}-{high:.1%})" if ran else "")
        )
    lines.append("survivors:" if survivors else "survivors: none")
    lines.extend(f"  {s}" for s in sorted(survivors))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sampling = commands.add_parser("sample", help="keep a seeded uniform sample of the mutants")
    sampling.add_argument("session")
    sampling.add_argument("size", type=int)
    sampling.add_argument("--seed", type=int, default=19)
    deferring = commands.add_parser("defer", help="leave a package's pending mutants out")
    deferring.add_argument("session")
    deferring.add_argument("package", help="e.g. authserver/services/")
    reporting = commands.add_parser("report", help="kill rate of the mutants run, with 95 % CI")
    reporting.add_argument("session")
    args = parser.parse_args(argv)
    with use_db(args.session, WorkDB.Mode.open) as work_db:
        if args.command == "sample":
            kept, pending = sample(work_db, args.size, args.seed)
            print(f"estimate: sampled {kept} of {pending} pending mutants (seed {args.seed})")
        elif args.command == "defer":
            print(f"estimate: deferred {defer(work_db, args.package)} pending mutants")
        else:
            print(report(work_db))
    return 0


if __name__ == "__main__":
    sys.exit(main())
