"""The ``ztnode`` command line.

Subcommands are small functions over the library API so that everything the CLI can do, a program
can do too. Exit codes: 0 success, 1 a negative answer (e.g. an identity that does not validate),
2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ztnode._version import __version__
from ztnode.errors import DecodeError
from ztnode.identity import Identity

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_USAGE = 2


def _fail(msg: str) -> int:
    print(f"ztnode: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _read_identity_arg(arg: str) -> Identity:
    """An identity given either as a file path or as the text itself.

    A string that parses as an identity is taken literally; otherwise it must name a file. This
    order means a file literally named like an identity cannot shadow the text form.
    """
    text = arg.strip()
    try:
        return Identity.from_string(text)
    except DecodeError as literal_error:
        path = Path(arg)
        if not path.is_file():
            if ":" in text:
                raise literal_error
            raise DecodeError(
                f"{arg!r} is neither an identity string nor a readable file"
            ) from None
        return Identity.from_string(path.read_text().strip())


def cmd_identity_new(args: argparse.Namespace) -> int:
    ident = Identity.generate()
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            return _fail(f"{out} exists; use --force to overwrite it")
        ident.save(out, include_private=True)
        if args.public_out:
            ident.save(Path(args.public_out), include_private=False)
        print(ident.to_string())
    else:
        print(ident.to_string(include_private=True))
    return EXIT_OK


def cmd_identity_public(args: argparse.Namespace) -> int:
    try:
        ident = _read_identity_arg(args.identity)
    except (DecodeError, OSError) as e:
        return _fail(str(e))
    print(ident.to_string())
    return EXIT_OK


def cmd_identity_validate(args: argparse.Namespace) -> int:
    try:
        ident = _read_identity_arg(args.identity)
    except (DecodeError, OSError) as e:
        return _fail(str(e))
    if ident.validate():
        if not args.quiet:
            print(f"{ident.address:010x}: valid")
        return EXIT_OK
    if not args.quiet:
        print(f"{ident.address:010x}: INVALID (address does not match the public key)")
    return EXIT_NEGATIVE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ztnode",
        description="A ZeroTier 1.x node with in-process sockets, a root server and a controller.",
    )
    p.add_argument("--version", action="version", version=f"ztnode {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ident = sub.add_parser("identity", help="create, inspect and validate ZeroTier identities")
    isub = ident.add_subparsers(dest="identity_command", metavar="ACTION")

    new = isub.add_parser(
        "new", help="generate an identity (prints the secret form unless --out is given)"
    )
    new.add_argument("--out", metavar="FILE", help="write the secret form here (mode 0600)")
    new.add_argument(
        "--public-out", metavar="FILE", help="with --out, also write the public form here"
    )
    new.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    new.set_defaults(func=cmd_identity_new)

    pub = isub.add_parser("public", help="print the public form of an identity")
    pub.add_argument("identity", metavar="FILE_OR_STRING")
    pub.set_defaults(func=cmd_identity_public)

    val = isub.add_parser(
        "validate", help="check that an identity's address derives from its key (exit 0 if valid)"
    )
    val.add_argument("identity", metavar="FILE_OR_STRING")
    val.add_argument("-q", "--quiet", action="store_true", help="no output, exit code only")
    val.set_defaults(func=cmd_identity_validate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        rc: int = func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into a closed reader (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    return rc


if __name__ == "__main__":
    sys.exit(main())
