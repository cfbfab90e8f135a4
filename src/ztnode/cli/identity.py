"""``ztnode identity new|public|validate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ztnode.cli.common import EXIT_NEGATIVE, EXIT_OK, _fail
from ztnode.errors import DecodeError
from ztnode.identity import Identity


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
        try:  # the folder too, as a user asking for root/identity.secret expects
            out.parent.mkdir(parents=True, exist_ok=True)
            ident.save(out, include_private=True)
            if args.public_out:
                public_out = Path(args.public_out)
                public_out.parent.mkdir(parents=True, exist_ok=True)
                ident.save(public_out, include_private=False)
        except OSError as e:
            return _fail(f"cannot write the identity: {e}")
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
