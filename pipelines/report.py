"""Stage `report`: reports/report.md, figures and tables from every measured metrics file."""

from __future__ import annotations

from common import run_main, stage

from repro import provenance
from repro.config import flatten
from repro.report import build_report
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
            params=params.to_dict(),
            provenance=provenance.collect(params, root),
        )
        tracker.log_artifact(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
