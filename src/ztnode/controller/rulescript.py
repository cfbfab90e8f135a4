"""ZeroTier's rules language, compiled to the controller's JSON as ZeroTier's compiler does.

People write flow rules as scripts in the language of ZeroTier's rules editor (ZeroTierOne's
``rule-compiler/rule-compiler.js``): macros with parameters, ``tag`` definitions with ids, enums,
flags and defaults, ``cap`` definitions, and rule sets ``action [matches];`` where matches are
read left to right with ``not``, ``or`` and ``and``. :func:`compile_rules` turns one into the
``rules``, ``capabilities`` and ``tags`` a network's JSON holds, with the same output as the
reference compiler for every script it accepts and its messages, lines and columns for the ones
it rejects (``tests/controller/test_rulescript.py`` checks all 375 of its recorded answers).

The reference reads a script in two steps, and so does this module:

1. Tokens are split on blanks; a token that is an action or a definition keyword (``drop``,
   ``accept``, ``tee``, ``watch``, ``redirect``, ``break``, ``priority``, ``macro``, ``tag``,
   ``cap``) opens a block, and a token ending in ``;`` closes the innermost one. ``#`` starts a
   comment only at the start of a token. Line numbers count from 1; columns count from 0 on the
   first line and from 1 on the others (the reference's counter starts over at each newline and
   then moves past it).
2. Definitions are collected, then capability rule sets and the base rule set are rendered.

Where the reference is lax in a way that would hand the controller something wrong, this
compiler is stricter or exact, and the tests say where and why: IP addresses must be addresses
(the reference's patterns are unanchored), TEE/WATCH/REDIRECT targets must be ZeroTier
addresses, characteristic masks and tag defaults are the unsigned values the script names (the
reference passes them through signed 32-bit arithmetic), recursive macros and incomplete
TEE/WATCH arguments are reported as errors (the reference throws), and names that are keys of
JavaScript's ``Object.prototype`` (``constructor``, ``toString``...) are reserved words
everywhere, not only where the reference happens to look them up with ``in``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Final, Union

__all__ = ["CompiledRules", "RuleScriptError", "compile_rules"]

# --- the language's vocabulary -------------------------------------------------------------------

CHARACTERISTIC_BITS: Final = {
    "inbound": 63,
    "multicast": 62,
    "broadcast": 61,
    "ipauth": 60,
    "macauth": 59,
    "tcp_fin": 0,
    "tcp_syn": 1,
    "tcp_rst": 2,
    "tcp_psh": 3,
    "tcp_ack": 4,
    "tcp_urg": 5,
    "tcp_ece": 6,
    "tcp_cwr": 7,
    "tcp_ns": 8,
    "tcp_rs2": 9,
    "tcp_rs1": 10,
    "tcp_rs0": 11,
}
ETHERTYPES: Final = {
    "ipv4": 0x0800,
    "arp": 0x0806,
    "wol": 0x0842,
    "rarp": 0x8035,
    "ipv6": 0x86DD,
    "atalk": 0x809B,
    "aarp": 0x80F3,
    "ipx_a": 0x8137,
    "ipx_b": 0x8138,
}
IP_PROTOCOLS: Final = {
    "icmp": 0x01,
    "icmp4": 0x01,
    "icmpv4": 0x01,
    "igmp": 0x02,
    "ipip": 0x04,
    "tcp": 0x06,
    "egp": 0x08,
    "igp": 0x09,
    "udp": 0x11,
    "rdp": 0x1B,
    "esp": 0x32,
    "ah": 0x33,
    "icmp6": 0x3A,
    "icmpv6": 0x3A,
    "l2tp": 0x73,
    "sctp": 0x84,
    "udplite": 0x88,
}
#: The keys every JavaScript object answers to through its prototype: the reference's ``in``
#: tests see them in its keyword tables, so they open blocks and count as reserved there.
_JS_PROTOTYPE_KEYS: Final = frozenset(
    (
        "constructor",
        "__proto__",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
        "hasOwnProperty",
        "isPrototypeOf",
        "propertyIsEnumerable",
        "toLocaleString",
        "toString",
        "valueOf",
    )
)
_ACTIONS: Final = {
    "drop": "ACTION_DROP",
    "accept": "ACTION_ACCEPT",
    "tee": "ACTION_TEE",
    "watch": "ACTION_WATCH",
    "redirect": "ACTION_REDIRECT",
    "break": "ACTION_BREAK",
    "priority": "ACTION_PRIORITY",
}
#: Match keyword: (controller rule type, number of arguments). ipsrc/ipdest pick V4 or V6.
_MATCHES: Final = {
    "ztsrc": ("MATCH_SOURCE_ZEROTIER_ADDRESS", 1),
    "ztdest": ("MATCH_DEST_ZEROTIER_ADDRESS", 1),
    "vlan": ("MATCH_VLAN_ID", 1),
    "vlanpcp": ("MATCH_VLAN_PCP", 1),
    "vlandei": ("MATCH_VLAN_DEI", 1),
    "ethertype": ("MATCH_ETHERTYPE", 1),
    "macsrc": ("MATCH_MAC_SOURCE", 1),
    "macdest": ("MATCH_MAC_DEST", 1),
    "ipsrc": ("", 1),
    "ipdest": ("", 1),
    "iptos": ("MATCH_IP_TOS", 2),
    "ipprotocol": ("MATCH_IP_PROTOCOL", 1),
    "icmp": ("MATCH_ICMP", 2),
    "sport": ("MATCH_IP_SOURCE_PORT_RANGE", 1),
    "dport": ("MATCH_IP_DEST_PORT_RANGE", 1),
    "chr": ("MATCH_CHARACTERISTICS", 1),
    "framesize": ("MATCH_FRAME_SIZE_RANGE", 1),
    "random": ("MATCH_RANDOM", 1),
    "tand": ("MATCH_TAGS_BITWISE_AND", 2),
    "tor": ("MATCH_TAGS_BITWISE_OR", 2),
    "txor": ("MATCH_TAGS_BITWISE_XOR", 2),
    "tdiff": ("MATCH_TAGS_DIFFERENCE", 2),
    "teq": ("MATCH_TAGS_EQUAL", 2),
    "tseq": ("MATCH_TAG_SENDER", 2),
    "treq": ("MATCH_TAG_RECEIVER", 2),
}
_OPENS_BLOCK: Final = frozenset(("macro", "tag", "cap", *_ACTIONS)) | _JS_PROTOTYPE_KEYS
_RESERVED: Final = (
    frozenset(
        (
            "macro",
            "tag",
            "cap",
            "default",
            *_ACTIONS,
            *_MATCHES,
            "type",
            "enum",
            "class",
            "define",
            "import",
            "include",
            "log",
            "not",
            "xor",
            "or",
            "and",
            "set",
            "var",
            "let",
        )
    )
    | _JS_PROTOTYPE_KEYS
)
#: Includes nested deeper than this are reported (the reference recurses until its stack ends).
MAX_INCLUDE_DEPTH: Final = 64


class RuleScriptError(ValueError):
    """A script the compiler rejects, with the reference's line and column convention."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"line {line} column {column}: {message}")
        self.line = line
        self.column = column
        self.message = message


# --- the token tree ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    line: int
    column: int


_Node = Union[_Token, "list[_Node]"]


def _head(node: _Node) -> _Token | None:
    """The token a node's position is reported at: itself, or a block's first token."""
    while isinstance(node, list):
        node = node[0]
    return node


def _fail(node: _Node, message: str) -> RuleScriptError:
    tok = _head(node)
    return RuleScriptError(tok.line, tok.column, message) if tok else RuleScriptError(0, 0, message)


def _word(node: _Node) -> str | None:
    """A token's text, or None for a block."""
    return node.text if isinstance(node, _Token) else None


def _tokenize(src: str) -> list[_Node]:
    """Step 1: the block tree (see the module docstring)."""
    stack: list[list[_Node]] = [[]]
    text, line0, col0 = "", -1, -1
    line, col = 1, 0
    skipping = False

    def flush() -> None:
        nonlocal text
        closes = text.endswith(";")
        word = text[:-1] if closes else text
        if word:
            stack[-1].append(_Token(word, line0, col0))
        if closes and len(stack) > 1 and stack[-1]:
            done = stack.pop()
            stack[-1].append(done)
        elif word in _OPENS_BLOCK:
            stack.append([])
        text = ""

    for ch in src:
        if skipping:
            if ch in "\r\n":  # in a comment a CR counts as a line end too
                skipping = False
                line, col = line + 1, 0
        elif ch in "\n\r\t ":
            if ch == "\n":
                line, col = line + 1, 0
            if text:
                flush()
        elif not text and ch == "#":
            skipping = True
        else:
            if not text:
                line0, col0 = line, col
            text += ch
        col += 2 if ord(ch) > 0xFFFF else 1  # columns count UTF-16 units, as in JavaScript
    if text:
        word = text[:-1] if text.endswith(";") else text
        if word:
            stack[-1].append(_Token(word, line0, col0))
    while len(stack) > 1 and stack[-1]:
        done = stack.pop()
        stack[-1].append(done)
    return stack[0]


# --- numbers as the reference reads them ---------------------------------------------------------

_DECIMAL_PREFIX: Final = re.compile(r"[+-]?\d+")
_HEX_PREFIX: Final = re.compile(r"([+-]?)(?:0[xX])?([0-9a-fA-F]+)")
_FLOAT_PREFIX: Final = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


def _leading_int(text: str, base: int) -> int | None:
    """The integer at the start of ``text`` (JavaScript's ``parseInt``), None if there is none."""
    text = text.lstrip()
    if base == 16:
        m = _HEX_PREFIX.match(text)
        return int(m.group(1) + m.group(2), 16) if m else None
    m = _DECIMAL_PREFIX.match(text)
    return int(m.group(0)) if m else None


def _num(text: str | None) -> int:
    """The reference's number reader: ``0x`` hex or decimal, leading digits only, -1 for none."""
    if not text:
        return -1
    low = text.lower()
    value = _leading_int(low[2:], 16) if len(low) > 2 and low.startswith("0x") else None
    if value is None and not (len(low) > 2 and low.startswith("0x")):
        value = _leading_int(low, 10)
    return -1 if value is None else value


def _leading_float(text: str) -> float:
    """JavaScript's ``parseFloat`` followed by ``|| 0``."""
    m = _FLOAT_PREFIX.match(text.lstrip())
    if not m:
        return 0.0
    value = float(m.group(0).replace("Infinity", "inf"))
    return 0.0 if math.isnan(value) else value


def _int32(value: int) -> int:
    """A flag mask as the reference holds it: JavaScript's bitwise operators work on signed
    32-bit integers, so a flag on bit 31 is negative, and a tag value naming it is rejected."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def _hex_only(text: str) -> str:
    return "".join(c for c in text.lower() if c in "0123456789abcdef")


def _mac(text: str) -> str:
    """The first twelve hex digits, paired with colons (other characters are skipped)."""
    digits = _hex_only(text)[:12]
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def _valid_name(name: str) -> bool:
    """Names start with a non-digit and hold letters, digits (any script) and ``_``."""
    return bool(name) and not name[0].isdigit() and all(c == "_" or c.isalnum() for c in name)


def _range(text: str, top: int) -> tuple[int, int] | None:
    """``n`` or ``a-b`` within ``0..top``, else None."""
    if text.find("-") > 0:
        parts = text.split("-")
        if len(parts) != 2:
            return None
        lo, hi = _num(parts[0]), _num(parts[1])
    else:
        lo = hi = _num(text)
    if lo < 0 or lo > top or hi < 0 or hi > top or hi < lo:
        return None
    return lo, hi


def _ip_network(text: str) -> IPv4Network | IPv6Network | None:
    """``address/bits`` with a real address and a prefix length that fits it."""
    addr, _, bits = text.partition("/")
    if not bits.isdigit():
        return None
    try:
        net = IPv6Network(f"{addr}/{int(bits)}", strict=False) if ":" in addr else None
        return net or IPv4Network(f"{addr}/{int(bits)}", strict=False)
    except ValueError:
        return None


# --- definitions --------------------------------------------------------------------------------


@dataclass
class _Tag:
    id: int
    default: int | None
    enums: dict[str, int]
    flags: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "default": self.default, "enums": self.enums, "flags": self.flags}


@dataclass
class _Cap:
    id: int
    default: bool
    body: list[_Node]
    rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Macro:
    params: dict[str, int]
    body: list[_Node]


def _split_params(text: str) -> list[str]:
    return re.split(r"[,)]+", text)


@dataclass(frozen=True)
class CompiledRules:
    """What a script defines, in the controller's JSON vocabulary."""

    rules: list[dict[str, Any]]
    capabilities: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    capabilities_by_name: dict[str, int]
    tags_by_name: dict[str, dict[str, Any]]

    def network_json(self) -> dict[str, Any]:
        """The part of a network's JSON the script sets."""
        return {"rules": self.rules, "capabilities": self.capabilities, "tags": self.tags}

    def as_json(self) -> dict[str, Any]:
        """The reference command line's output (``node cli.js script``)."""
        return {
            "config": self.network_json(),
            "capabilitiesByName": self.capabilities_by_name,
            "tagsByName": self.tags_by_name,
        }


class _Compiler:
    def __init__(self) -> None:
        self.macros: dict[str, _Macro] = {}
        self.tags: dict[str, _Tag] = {}
        self.caps: dict[str, _Cap] = {}

    # step 2: definitions

    def collect(self, parsed: list[_Node]) -> list[_Node]:
        base: list[_Node] = []
        i = 0
        while i < len(parsed):
            node = parsed[i]
            keyword = _word(node)
            keyword = keyword.lower() if keyword is not None else None
            if keyword in ("macro", "tag", "cap"):
                nxt = parsed[i + 1] if i + 1 < len(parsed) else None
                if not isinstance(nxt, list) or not isinstance(nxt[0], _Token):
                    what = {"macro": "Macro", "tag": "Tag", "cap": "Capability"}[keyword]
                    raise _fail(node, f"{what} definition is missing name.")
                i += 1
                if keyword == "macro":
                    self._macro(nxt)
                elif keyword == "tag":
                    self._tag(nxt)
                else:
                    self._cap(nxt)
            else:
                base.append(node)
            i += 1
        return base

    def _name(self, tok: _Token, kind: str, taken: dict[str, Any]) -> str:
        name = tok.text.lower()
        if kind == "macro":
            paren = name.find("(")
            name = name[:paren] if paren > 0 else name
        if not _valid_name(name):
            raise _fail(tok, f"Invalid {kind} name.")
        if name in _RESERVED:
            raise _fail(tok, f"{kind.capitalize()} name is a reserved word.")
        if name in taken:
            raise _fail(tok, f"Multiple definition of {kind} name.")
        return name

    def _macro(self, block: list[_Node]) -> None:
        tok = block[0]
        assert isinstance(tok, _Token)
        name = self._name(tok, "macro", self.macros)
        lowered = tok.text.lower()
        params: dict[str, int] = {}
        paren = lowered.find("(")
        if paren > 0:
            for index, p in enumerate(_split_params(lowered[paren + 1 :])):
                if p:
                    params[p] = index
        self.macros[name] = _Macro(params, block[1:])

    def _tag(self, block: list[_Node]) -> None:
        tok = block[0]
        assert isinstance(tok, _Token)
        name = self._name(tok, "tag", self.tags)
        flags: dict[str, int] = {}
        enums: dict[str, int] = {}
        tag_id = -1
        default: str | None = None
        k = 1
        while k < len(block):
            word = _word(block[k])
            if word is None:
                raise _fail(block[k], "Unrecognized keyword in tag definition.")
            kw = word.lower()
            if kw == "id":
                if tag_id >= 0:
                    raise _fail(block[k], "Duplicate tag id definition.")
                if k + 1 >= len(block):
                    raise _fail(block[k], "Missing numeric value for ID.")
                k += 1
                tag_id = _num(_word(block[k]))
                if tag_id < 0 or tag_id > 0xFFFF_FFFF:
                    raise _fail(block[k], "Invalid or out of range tag ID.")
            elif kw == "default":
                if default is not None:
                    raise _fail(block[k], "Duplicate tag default directive.")
                if k + 1 >= len(block):
                    raise _fail(block[k], "Missing value for default.")
                k += 1
                value = _word(block[k])
                if value is None:
                    raise _fail(block[k], "Missing value for default.")
                default = value
            elif kw == "flag":
                if k + 2 >= len(block):
                    raise _fail(block[k], "Missing tag flag name or bit index.")
                k += 1
                mask = 0
                for bit_text in re.split(r",+", _word(block[k]) or ""):
                    b = bit_text.lower()
                    if b in flags:
                        mask = _int32(mask | flags[b])
                        continue
                    bit = _num(b)
                    if bit < 0 or bit > 31:
                        raise _fail(
                            block[k],
                            "Bit index invalid, out of range, or references an undefined flag "
                            "name.",
                        )
                    mask = _int32(mask | 1 << bit)
                k += 1
                flag = (_word(block[k]) or "").lower()
                if not _valid_name(flag) or flag in _JS_PROTOTYPE_KEYS:
                    raise _fail(block[k], "Invalid or reserved flag name.")
                if flag in flags:
                    raise _fail(block[k], "Duplicate flag name in tag definition.")
                flags[flag] = mask
            elif kw == "enum":
                if k + 2 >= len(block):
                    raise _fail(block[k], "Missing tag enum name or value.")
                k += 1
                number = _num(_word(block[k]))
                if number < 0 or number > 0xFFFF_FFFF:
                    raise _fail(block[k], "Tag enum value invalid or out of range.")
                k += 1
                enum = (_word(block[k]) or "").lower()
                if not _valid_name(enum) or enum in _JS_PROTOTYPE_KEYS:
                    raise _fail(block[k], "Invalid or reserved tag enum name.")
                if enum in enums:
                    raise _fail(block[k], "Duplicate enum name in tag definition.")
                enums[enum] = number
            else:
                raise _fail(block[k], "Unrecognized keyword in tag definition.")
            k += 1
        if tag_id < 0:
            raise _fail(tok, "Tag definition is missing a numeric ID.")
        resolved: int | None = None
        if default is not None:
            # Enum and flag names as written (they were stored lower-cased), else a number.
            # Unsigned, unlike the reference's signed 32-bit result: a tag value is a u32.
            if default in enums:
                resolved = enums[default]
            elif default in flags:
                resolved = flags[default] & 0xFFFF_FFFF
            else:
                resolved = abs(_leading_int_auto(default) or 0) & 0xFFFF_FFFF
        self.tags[name] = _Tag(tag_id, resolved, enums, flags)

    def _cap(self, block: list[_Node]) -> None:
        tok = block[0]
        assert isinstance(tok, _Token)
        name = self._name(tok, "capability", self.caps)
        body: list[_Node] = []
        cap_id = -1
        default = False
        k = 1
        while k < len(block):
            word = _word(block[k])
            kw = word.lower() if word is not None else None
            if kw == "id":
                if cap_id >= 0:
                    raise _fail(block[k], "Duplicate id directive in capability definition.")
                if k + 1 >= len(block):
                    raise _fail(block[k], "Missing value for ID.")
                k += 1
                cap_id = _num(_word(block[k]))
                if cap_id < 0 or cap_id > 0xFFFF_FFFF:
                    raise _fail(block[k - 1], "Invalid or out of range capability ID.")
                if any(c.id == cap_id for c in self.caps.values()):
                    raise _fail(block[k - 1], "Duplicate capability ID.")
            elif kw == "default":
                default = True
            else:
                body.append(block[k])
            k += 1
        if cap_id < 0:
            raise _fail(tok, "Capability definition is missing a numeric ID.")
        self.caps[name] = _Cap(cap_id, default, body)

    # step 3: rule sets

    def actions(
        self, tree: list[_Node], out: list[dict[str, Any]], params: dict[str, str], depth: int = 0
    ) -> None:
        k = 0
        while k < len(tree):
            node = tree[k]
            word = _word(node)
            action = word.lower() if word is not None else ""
            nxt = tree[k + 1] if k + 1 < len(tree) else None
            block = nxt if isinstance(nxt, list) else None
            if not action:
                pass
            elif action == "include":
                if nxt is None:
                    raise _fail(node, "Include directive is missing a macro name.")
                k += 1
                self._include(tree[k], out, depth)
            elif action in ("drop", "accept", "break"):
                if block is not None:
                    k += 1
                    self.matches(block, out, params)
                out.append({"type": _ACTIONS[action]})
            elif action in ("tee", "watch"):
                if block is None or (isinstance(block[0], list) and len(block[0]) < 2):
                    raise _fail(
                        node,
                        "The tee and watch actions require two paremters (max length or 0 "
                        "for all, target).",
                    )
                if len(block) < 2:  # the reference throws reading the missing target
                    raise _fail(
                        node, "The tee and watch actions require a target after the length."
                    )
                k += 1
                length = _num(_word(block[0]))
                if length < -1 or length > 0xFFFF:
                    first, second = _head(block[0]), _head(block[1])
                    assert first is not None and second is not None
                    raise RuleScriptError(
                        first.line,
                        second.column,
                        "Tee/watch max packet length to forward invalid or out of range.",
                    )
                target = _word(block[1])
                if target is None or len(_hex_only(target)) != 10 or len(target) != 10:
                    raise _fail(
                        block[1], "Missing or invalid ZeroTier address target for tee/watch."
                    )
                self.matches(block[2:], out, params)
                out.append({"type": _ACTIONS[action], "address": target, "length": length})
            elif action == "redirect":
                if block is None:
                    raise _fail(node, "The redirect action requires a target parameter.")
                k += 1
                target = _word(block[0])
                if target is None or len(_hex_only(target)) != 10 or len(target) != 10:
                    raise _fail(
                        block[0], "Missing or invalid ZeroTier address target for redirect."
                    )
                self.matches(block[1:], out, params)
                out.append({"type": _ACTIONS[action], "address": target})
            else:
                raise _fail(node, "Unrecognized action or directive in rule set.")
            k += 1

    def _include(self, node: _Node, out: list[dict[str, Any]], depth: int) -> None:
        text = _word(node)
        if text is None:
            raise _fail(node, "Macro name not found.")
        name, values = text, []
        paren = text.find("(")
        if paren > 0:
            values = [v for v in _split_params(text[paren + 1 :]) if v]
            name = text[:paren]
        macro = self.macros.get(name)
        if macro is None:
            raise _fail(node, "Macro name not found.")
        if depth >= MAX_INCLUDE_DEPTH:
            raise _fail(node, "Macros include each other too deeply (a macro includes itself).")
        params: dict[str, str] = {}
        for param, index in macro.params.items():
            if index >= len(values):
                raise _fail(node, "Missing one or more required macro parameter.")
            params[param] = values[index]
        self.actions(macro.body, out, params, depth + 1)

    def matches(self, tree: list[_Node], out: list[dict[str, Any]], params: dict[str, str]) -> None:
        not_ = or_ = False
        k = 0
        while k < len(tree):
            node = tree[k]
            word = _word(node)
            match = word.lower() if word is not None else ""
            if match in ("", "and"):
                k += 1
                continue
            if match == "not":
                not_ = True
            elif match == "or":
                or_ = True
            else:
                spec = _MATCHES.get(match)
                if spec is None:
                    raise _fail(node, f'Unrecognized match type "{match}".')
                args: list[_Token] = []
                for _ in range(spec[1]):
                    k += 1
                    if k >= len(tree):
                        raise _fail(tree[k - 1], "Missing argument(s) to match.")
                    arg = _word(tree[k])
                    if arg is None or arg in _RESERVED or not arg:
                        raise _fail(
                            tree[k - 1],
                            "Missing argument(s) to match (invalid argument or argument is "
                            "reserved word).",
                        )
                    tok = tree[k]
                    assert isinstance(tok, _Token)
                    if arg.startswith("$"):
                        if arg not in params:
                            raise _fail(tok, "Undefined variable name.")
                        tok = _Token(params[arg], tok.line, tok.column)
                    args.append(tok)
                rule = self._match(match, spec[0], args)
                out.append({"type": rule.pop("type"), "not": not_, "or": or_, **rule})
                not_ = or_ = False
            k += 1

    def _match(self, match: str, kind: str, args: list[_Token]) -> dict[str, Any]:
        a = args[0]
        text = a.text
        if match in ("ztsrc", "ztdest"):
            zt = _hex_only(text)
            if len(zt) != 10:
                raise _fail(a, "Invalid ZeroTier address.")
            return {"type": kind, "zt": zt}
        if match in ("vlan", "vlanpcp", "vlandei", "ethertype", "ipprotocol"):
            table = ETHERTYPES if match == "ethertype" else IP_PROTOCOLS
            named = table.get(text) if match in ("ethertype", "ipprotocol") else None
            num = named if named is not None else _num(text)
            if num < 0 or num > 0xFFFF_FFFF:
                raise _fail(a, "Invalid numeric value.")
            key = {
                "vlan": "vlanId",
                "vlanpcp": "vlanPcp",
                "vlandei": "vlanDei",
                "ethertype": "etherType",
                "ipprotocol": "ipProtocol",
            }[match]
            return {"type": kind, key: num}
        if match == "random":
            p = min(max(_leading_float(text), 0.0), 1.0)
            return {"type": kind, "probability": math.floor(4294967295 * p)}
        if match in ("macsrc", "macdest"):
            mac = _mac(text)
            if len(mac) != 17:
                raise _fail(a, "Invalid MAC address.")
            return {"type": kind, "mac": mac}
        if match in ("ipsrc", "ipdest"):
            if text.find("/") <= 0:
                raise _fail(a, "Missing /bits netmask length designation in IP.")
            net = _ip_network(text)
            if net is None:
                raise _fail(a, "Invalid IP address (not valid IPv4 or IPv6).")
            v = 6 if isinstance(net, IPv6Network) else 4
            way = "SOURCE" if match == "ipsrc" else "DEST"
            return {"type": f"MATCH_IPV{v}_{way}", "ip": text}
        if match == "icmp":
            icmp_type = _num(text)
            if icmp_type < 0 or icmp_type > 0xFF:
                raise _fail(a, "Missing or invalid ICMP type.")
            code = _num(args[1].text)  # -1 (or anything not a number): any code
            if code > 0xFF:
                raise _fail(args[1], "Invalid ICMP code (use -1 for none).")
            return {"type": kind, "icmpType": icmp_type, "icmpCode": None if code < 0 else code}
        if match in ("sport", "dport", "framesize"):
            span = _range(text, 0xFFFF)
            if span is None:
                raise _fail(a, "Invalid numeric range.")
            return {"type": kind, "start": span[0], "end": span[1]}
        if match == "iptos":
            mask = _num(text)
            if mask < 0 or mask > 0xFF:
                raise _fail(a, "Invalid mask.")
            span = _range(args[1].text, 0xFF)
            if span is None:
                raise _fail(args[1], "Invalid value range.")
            return {"type": kind, "mask": mask, "start": span[0], "end": span[1]}
        if match == "chr":
            mask = 0
            for name in re.split(r",+", text):
                if not name:
                    continue
                bit = CHARACTERISTIC_BITS.get(name, -1)
                if bit < 0:
                    bit = _num(name)
                if bit < 0 or bit > 63:
                    raise _fail(a, "Invalid bit index (range 0-63) or unrecognized name.")
                mask |= 1 << bit
            return {"type": kind, "mask": f"{mask:016x}"}
        return self._tag_match(kind, args)

    def _tag_match(self, kind: str, args: list[_Token]) -> dict[str, Any]:
        name, value_text = args[0].text, args[1].text
        tag = self.tags.get(name)  # as written: definitions were stored lower-cased
        if tag is not None:
            tag_id = tag.id
            if value_text in tag.flags:
                value = tag.flags[value_text]
            elif value_text in tag.enums:
                value = tag.enums[value_text]
            else:
                value = _num(value_text)
        else:
            tag_id, value = _num(name), _num(value_text)
        if tag_id < 0 or tag_id > 0xFFFF_FFFF:
            raise _fail(args[0], "Undefined tag name and invalid tag value.")
        if value < 0 or value > 0xFFFF_FFFF:
            raise _fail(args[1], "Invalid tag value or unrecognized flag/enum name.")
        return {"type": kind, "id": tag_id, "value": value}


def _leading_int_auto(text: str) -> int | None:
    """JavaScript's ``parseInt`` without a radix: ``0x`` means hex, else decimal."""
    stripped = text.lstrip()
    body = stripped.lstrip("+-")
    if body[:2].lower() == "0x":
        return _leading_int(stripped, 16)
    return _leading_int(stripped, 10)


def compile_rules(script: str) -> CompiledRules:
    """Compile a rules script; :class:`RuleScriptError` says where and why it is rejected."""
    c = _Compiler()
    base = c.collect(_tokenize(script))
    for cap in c.caps.values():
        c.actions(cap.body, cap.rules, {})
    rules: list[dict[str, Any]] = []
    c.actions(base, rules, {})
    return CompiledRules(
        rules=rules,
        capabilities=[
            {"id": k.id, "default": k.default, "rules": k.rules} for k in c.caps.values()
        ],
        tags=[{"id": t.id, "default": t.default} for t in c.tags.values()],
        capabilities_by_name={n: k.id for n, k in c.caps.items()},
        tags_by_name={n: t.as_json() for n, t in c.tags.items()},
    )
