"""`ployd plan [PATH]`: the expanded jobs, their hardware candidates and hourly prices."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.cli.paths import add_path_argument

    add_path_argument(parser, "plan")
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
    parser.add_argument(
        "--regions",
        default=None,
        metavar="R1,R2",
        help="the regions to price and place in (default: those of $PLOYD_EC2_SUBNETS, "
        "else $PLOYD_AWS_REGION, else us-east-1)",
    )
    parser.add_argument(
        "--at",
        default=None,
        metavar="TIME",
        help="plan as at this ISO-8601 UTC time (default now): reservations and Capacity "
        "Blocks outside their window then are not used",
    )
    parser.add_argument(
        "--tenant",
        default=None,
        metavar="FORGE:NAME",
        help="the tenant whose jobs these are (github:acme): reservations for some "
        "tenants are used only by theirs",
    )
    parser.add_argument(
        "--reservations",
        choices=("config", "aws"),
        default="config",
        help="the reservations as PLOYD_EC2_CAPACITY_RESERVATIONS says (default), or as "
        "EC2 says too (DescribeCapacityReservations: types, states, windows; needs AWS "
        "credentials)",
    )
    parser.add_argument(
        "--prices",
        choices=("catalog", "aws"),
        default="catalog",
        help="on-demand prices per region: the catalog's list prices (default), or the AWS "
        "Pricing API's (needs AWS credentials; the catalog where it fails)",
    )


def main(args: argparse.Namespace) -> int:
    import sys

    from app.cli.paths import PathConflict, config_path

    try:
        args.path = config_path(args)
    except PathConflict as conflict:
        print(f"ployd plan: {conflict}", file=sys.stderr)
        return 2

    from app.core.config.errors import ConfigInvalid
    from app.core.config.loader import load_config_file
    from app.core.expand import expand
    from app.core.hardware import Catalog, CatalogError
    from app.settings import env_setting

    try:
        catalog = Catalog.load(args.catalog or env_setting("PLOYD_CATALOG_FILE") or None)
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
    import os

    from app.adapters.ec2.regions import PlacementError
    from app.cli.plan_regions import (
        candidate_text,
        distinct,
        fetch_prices,
        plan_fleet,
        sections,
    )
    from app.core.scheduler import Requirements, Scheduler

    # The scheduler's order across the regions, reservations first (spot prices are
    # estimated here: the server reads them from EC2).
    try:
        placed = plan_fleet(os.environ, args.regions)
    except PlacementError as exc:
        print(f"ployd plan: {exc}", file=sys.stderr)
        return 2
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    if args.at:
        try:
            now = datetime.fromisoformat(args.at.replace("z", "Z"))
        except ValueError:
            print(f"ployd plan: --at {args.at!r}: expected an ISO-8601 time", file=sys.stderr)
            return 2
        if now.tzinfo is None:
            print(
                f"ployd plan: --at {args.at!r}: give its time zone, e.g. 2026-12-05T12:00:00Z",
                file=sys.stderr,
            )
            return 2
        now = now.astimezone(UTC)
    tenant = (args.tenant,) if args.tenant else None
    if args.reservations == "aws":
        from app.cli.plan_regions import fetch_reservations

        try:
            said = fetch_reservations(placed, env_setting("PLOYD_AWS_ENDPOINT_URL") or None)
        except PlacementError as exc:
            print(f"ployd plan: {exc}", file=sys.stderr)
            return 2
        for warning in said:
            print(f"ployd plan: {warning}", file=sys.stderr)
    if args.prices == "aws":
        fetch_prices(placed, catalog, env_setting("PLOYD_AWS_PRICING_ENDPOINT_URL") or None)
    scheduler = Scheduler(catalog, placed.fleet, None, placed.od_prices)
    several = len(placed.regions) > 1
    priced: list[str] = []
    header = ("JOB", "NEEDS", "WHEN", "HARDWARE", "SCHEDULER WOULD TRY", "WORKLOAD", "$/HOUR")
    rows: list[tuple[str, ...]] = [header]
    total = 0.0
    for j in expand(config, catalog):
        spec = j.spec
        n = max(args.candidates, 1)
        tries = distinct(
            scheduler.candidates(Requirements.from_planned(j), now=now, tenant=tenant)
        )
        shown = [candidate_text(c, several) for c in tries[:n]]
        priced += [c.instance_type for c in tries[:n] if c.reservation is None]
        cands = ", ".join(shown) + (f", +{len(tries) - n}" if len(tries) > n else "")
        if j.hardware:
            hw = " | ".join(str(s) for s in j.hardware)
        elif j.resources is not None:
            from app.core.config.semantic import describe_resources

            hw = describe_resources(j.resources)
        else:
            hw = "-"
        price = "-"
        if tries:
            p = tries[0].price_usd_hour
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
                spec.workload.value,
                price,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(
        f"\n{len(rows) - 1} jobs; one run's first-choice machines: ${total:.2f}/hour "
        "(manual jobs excluded; * spot price estimated: the server reads EC2's)"
    )
    for line in sections(placed, catalog, priced, now, tenant):
        print(line)
    return 0
