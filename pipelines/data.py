"""Stage `data@<dataset>`: download (or find), SHA-256-verify and canonicalise one dataset."""

from __future__ import annotations

import os
from pathlib import Path

from common import run_main, stage

from repro import data
from repro.config import flatten
from repro.io import write_json
from repro.tracking import tracked_run


def main() -> None:
    args, params, root = stage(__doc__, lambda p: p.add_argument("--dataset", required=True))
    os.chdir(root)  # relative paths: the committed manifest must not hold the user's directories
    if args.dataset not in params.data.datasets:
        raise ValueError(f"data.datasets: {args.dataset!r} is not listed ({params.data.datasets})")
    cfg = params.data
    with tracked_run(
        params.tracking,
        stage=f"data@{args.dataset}",
        run_name=f"data/{args.dataset}",
        params=flatten({"data": cfg.__dict__}) | {"dataset": args.dataset},
        tags={"profile": params.profile},
        experiment=f"{params.tracking.experiment}/data",
    ) as tracker:
        manifest = data.prepare_dataset(
            args.dataset,
            Path("data") / args.dataset,
            raw_dir=Path(cfg.raw_dir),
            sources=cfg.sources,
            mirror_dir=Path(cfg.mirror_dir) if cfg.mirror_dir else None,
            image_size=cfg.image_size,
            synthetic_sizes=cfg.synthetic_sizes,
            synthetic_channels=cfg.synthetic_channels,
        )
        out = Path("data") / f"{args.dataset}.manifest.json"
        write_json(out, manifest)
        tracker.log_artifact(out)


if __name__ == "__main__":
    run_main(main)
