"""Stage `report`: reports/report.md, figures and tables from every measured metrics file, and
reports/metrics.json (DVC metrics: the headline test losses and the claims per verdict)."""

from __future__ import annotations

from common import run_main, stage

from repro import provenance
from repro.config import flatten
from repro.io import write_json
from repro.report import build_report
from repro.report.claims.evaluate import claims_csv_counts
from repro.report.dvc_metrics import METRICS_FILE, headline_metrics
from repro.tracking import tracked_run


def main() -> None:
    _, params, root = stage(__doc__)
    with tracked_run(
        params.tracking,
        stage="report",
        run_name="report",
        params=flatten({"report": params.to_dict()["report"]}) | {"profile": params.profile},
        tags={"profile": params.profile},
        experiment=f"{params.tracking.experiment}/report",
    ) as tracker:
        path = build_report(
            root / "runs",
            root / "data",
            root / "reports",
            params=params,
            provenance=provenance.collect(params, root),
        )
        for out in (path, path.with_name("report.html"), path.with_name("claims.csv")):
            tracker.log_artifact(out)
        counts = claims_csv_counts(path.with_name("claims.csv"))
        metrics = headline_metrics(
            root / "runs",
            datasets=params.data.datasets,
            nz=params.model.nz,
            headline_bn=params.evaluate.headline_bn,
            verdicts=counts,
        )
        write_json(root / "reports" / METRICS_FILE, metrics)
        tracker.log_metrics({f"claims_{v.replace(' ', '_')}": n for v, n in counts.items()})
    print(f"wrote {path} and report.html; claims: {counts}")


if __name__ == "__main__":
    run_main(main)
