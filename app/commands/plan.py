"""`ployd plan [PATH]`: the expanded jobs, their hardware candidates and hourly prices."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        default=".ployd.yml",
        help="the file to plan (default: .ployd.yml in this directory)",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=3,
        metavar="N",
        help="how many candidate instance types to show per job (default 3)",
    )
    parser.add_argument(
        "--catalog",
        default=None,
        metavar="FILE",
        help="an extra hardware catalog (JSON); default: $PLOYD_CATALOG_FILE",
    )


def _spot(workload: str, spot: str) -> str:
    if spot == "always":
        return "spot"
    if spot == "never":
        return "on-demand"
    if workload == "train":
        return "on-demand"  # auto: training is not interruptible by default
    return "spot→on-demand"


def main(args: argparse.Namespace) -> int:
    import os
    import sys

    from app.core.config.errors import ConfigInvalid
    from app.core.config.loader import load_config_file
    from app.core.expand import expand
    from app.core.hardware import Catalog, CatalogError

    try:
        catalog = Catalog.load(args.catalog or os.environ.get("PLOYD_CATALOG_FILE") or None)
        config = load_config_file(args.path, catalog=catalog)
    except CatalogError as exc:
        print(f"ployd plan: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError:
        print(f"ployd plan: {args.path}: no such file", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ployd plan: {args.path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    except ConfigInvalid as exc:
        for e in exc.errors:
            print(e, file=sys.stderr)
        return 1
    header = ("JOB", "NEEDS", "WHEN", "HARDWARE", "CANDIDATES", "SPOT", "WORKLOAD", "$/HOUR")
    rows: list[tuple[str, ...]] = [header]
    total = 0.0
    for j in expand(config, catalog):
        spec = j.spec
        n = max(args.candidates, 1)
        cands = ", ".join(j.candidates[:n]) + (", ..." if len(j.candidates) > n else "")
        if j.hardware:
            hw = " | ".join(str(s) for s in j.hardware)
        elif j.resources is not None:
            from app.core.config.semantic import describe_resources

            hw = describe_resources(j.resources)
        else:
            hw = "-"
        price = "-"
        if j.candidates:
            p = catalog.get(j.candidates[0]).price_usd_hour
            price = f"{p:.2f}"
            if spec.when.value != "manual":
                total += p
        needs = ", ".join(spec.needs) or "-"
        rows.append(
            (
                j.name,
                needs,
                spec.when.value,
                hw,
                cands or "(none)",
                _spot(spec.workload.value, spec.spot.value),
                spec.workload.value,
                price,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(
        f"\n{len(rows) - 1} jobs; on-demand estimate of one run's machines: "
        f"${total:.2f}/hour (manual jobs excluded; spot is usually 60-70% cheaper)"
    )
    return 0
