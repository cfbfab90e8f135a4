"""``ztnode world make|show``: planets and moons of one's own."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ztnode.cli.common import EXIT_OK, _fail
from ztnode.errors import ZtError


def cmd_world_make(args: argparse.Namespace) -> int:
    from ztnode.root.worlds import KeyPair, describe_json, make_world, parse_root_spec
    from ztnode.wire.world import World, WorldType

    kind = WorldType.PLANET if args.type == "planet" else WorldType.MOON
    try:
        roots = [parse_root_spec(r) for r in args.root]
        if args.previous and not Path(args.signing_key).exists():
            return _fail(
                f"--previous needs the existing signing key the previous revision names; "
                f"{args.signing_key} does not exist"
            )
        signing, created = KeyPair.load_or_create(Path(args.signing_key))
        next_key = signing
        if args.next_key:
            next_key, _ = KeyPair.load_or_create(Path(args.next_key))
        previous = World.from_bytes(Path(args.previous).read_bytes()) if args.previous else None
        if args.id is not None:
            world_id = int(args.id, 0)
        elif previous is not None:
            world_id = previous.id
        elif kind == WorldType.MOON:
            world_id = roots[0].identity.address  # moon ids conventionally name the first root
        else:
            return _fail("a planet needs --id")
        ts = args.timestamp if args.timestamp is not None else int(time.time() * 1000)
        world = make_world(kind, world_id, ts, roots, signing, next_key, previous)
    except (ZtError, ValueError, OSError) as e:
        return _fail(str(e))
    out = Path(args.out)
    try:
        out.write_bytes(world.to_bytes())
    except OSError as e:
        return _fail(f"cannot write {out}: {e}")
    if created:
        print(f"created signing key {args.signing_key} (keep it secret)", file=sys.stderr)
    print(describe_json(world))
    return EXIT_OK


def cmd_world_show(args: argparse.Namespace) -> int:
    from ztnode.root.worlds import describe_json
    from ztnode.wire.world import World

    try:
        world = World.from_bytes(Path(args.file).read_bytes())
    except (ZtError, OSError) as e:
        return _fail(str(e))
    print(describe_json(world))
    return EXIT_OK
