"""Stage `reference@<dataset>`: test losses of the all-zero image, the mean image and PCA."""

from __future__ import annotations

from common import run_main, stage

from repro.config import flatten
from repro.data import load_split
from repro.evaluate import reference_losses
from repro.io import write_json
from repro.tracking import tracked_run


def main() -> None:
    args, params, root = stage(__doc__, lambda p: p.add_argument("--dataset", required=True))
    data_dir = root / "data" / args.dataset
    train, _ = load_split(data_dir, "train")
    test, _ = load_split(data_dir, "test")
    with tracked_run(
        params.tracking,
        stage=f"reference@{args.dataset}",
        run_name=f"reference/{args.dataset}",
        params={"dataset": args.dataset, "model.nz": params.model.nz},
        tags={"profile": params.profile},
        experiment=f"{params.tracking.experiment}/evaluate",
    ) as tracker:
        ref = reference_losses(train, test, params.model.nz)
        out = root / "runs" / args.dataset / "reference.json"
        write_json(out, {"dataset": args.dataset, "split": "test", **ref})
        tracker.log_metrics(flatten(ref))


if __name__ == "__main__":
    run_main(main)
