"""The rules-language compiler against ZeroTier's own, case by case.

``tests/data/zt-rules-dsl.json`` is a copy of ``shared/vectors/zt-rules-dsl.json``: the answers of
ZeroTierOne 1.14.1's ``rule-compiler/rule-compiler.js`` (run as ``node cli.js script`` under
Node 20) for 375 scripts, 217 it accepts and 158 it rejects. For an accepted script our JSON
must equal its output; for a rejected one our message, line and column must equal its.

Where the reference is lax in a way that would hand a controller something wrong, or throws,
ztnode's compiler is deliberately stricter or exact instead; ``DEVIATIONS`` lists every such
case, what we answer and why, so a change in either direction fails here.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.controller.rulescript import RuleScriptError, compile_rules

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "zt-rules-dsl.json").read_text())
CASES = {c["name"]: c for c in VECTORS["cases"]}

_BAD_IP = "Invalid IP address (not valid IPv4 or IPv6)."
_BAD_TEE = "Missing or invalid ZeroTier address target for tee/watch."
_TEE_TARGET = "The tee and watch actions require a target after the length."

#: name -> (what we answer: ("error", line, column, message) or ("ok", path, value), why).
DEVIATIONS: dict[str, tuple[tuple[Any, ...], str]] = {
    "quirk_ip_regex_unanchored": (
        ("error", 1, 11, _BAD_IP),
        "the reference's IP patterns are unanchored; 999.10.0.1 is no address",
    ),
    "quirk_ipv4_pattern_unanchored": (("error", 1, 11, _BAD_IP), "300.1.2.3 is no address"),
    "quirk_ipv6_triple_colon_accepted": (("error", 1, 12, _BAD_IP), "fe80:::1 is no address"),
    "ip_mask_not_validated": (
        ("error", 2, 12, _BAD_IP),
        "a /40 on IPv4 (or an empty or doubled length) is no prefix; the controller would "
        "store garbage",
    ),
    "e_column_counts_utf16_units": (
        ("error", 1, 11, _BAD_IP),
        "rejected one token earlier: 10.0.0.0/8 followed by an emoji is no prefix (columns do "
        "count UTF-16 units, as checked by the accepted cases)",
    ),
    "quirk_tee_targets_unchecked": (
        ("error", 3, 10, _BAD_TEE),
        "a TEE target must be a ZeroTier address, not any ten characters",
    ),
    "tee_watch_target_not_validated": (("error", 1, 6, _BAD_TEE), "ZZZZZZZZZZ is no address"),
    "quirk_tee_target_param_literal": (
        ("error", 3, 12, _BAD_TEE),
        "the reference takes $monitorzt literally as the address",
    ),
    "quirk_constructor_match_ignored": (
        ("error", 2, 8, 'Unrecognized match type "constructor".'),
        "the reference finds Object.prototype.constructor in its table and emits nothing",
    ),
    "e_macro_recursive_exception": (
        ("error", 2, 11, "Macros include each other too deeply (a macro includes itself)."),
        "the reference recurses until JavaScript's stack overflows",
    ),
    "e_tee_args": (("error", 1, 0, _TEE_TARGET), "the reference throws a TypeError"),
    "e_tee_one_param_exception": (("error", 1, 0, _TEE_TARGET), "the reference throws"),
    "chr_combined_high_bits_quirk": (
        ("ok", ("config", "rules", 0, "mask"), "c000000000000000"),
        "inbound,multicast is bits 63 and 62; the reference ORs abs() of signed 32-bit values "
        "and loses bit 63",
    ),
    "quirk_chr_inbound_macauth_mask": (
        ("ok", ("config", "rules", 0, "mask"), "8800000000000000"),
        "bits 63 and 59, not the reference's 0x78...",
    ),
    "quirk_tag_default_all_ones": (
        ("ok", ("config", "tags", 0, "default"), 4294967295),
        "a tag value is a u32; the reference's & gives -1",
    ),
    "tag_default_forms": (
        ("ok", ("config", "tags", 7, "default"), 3000000000),
        "unsigned, as above (the reference gives -1294967296)",
    ),
}


def _answer(script: str) -> dict[str, Any]:
    try:
        return {"ok": True, "output": compile_rules(script).as_json()}
    except RuleScriptError as e:
        return {"ok": False, "error": {"line": e.line, "column": e.column, "message": e.message}}


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_case(name: str) -> None:
    case = CASES[name]
    got = _answer(case["script"])
    if name in DEVIATIONS:
        ours, _why = DEVIATIONS[name]
        if ours[0] == "error":
            assert got == {
                "ok": False,
                "error": {"line": ours[1], "column": ours[2], "message": ours[3]},
            }
        else:
            assert got["ok"], got
            assert _at(got["output"], ours[1]) == ours[2]
            assert _at(case["output"], ours[1]) != ours[2]  # still a deviation
        return
    if case["ok"]:
        assert got == {"ok": True, "output": case["output"]}
    else:
        assert got == {"ok": False, "error": case["error"]}


def test_every_vector_is_covered_and_counts() -> None:
    assert len(CASES) == 375
    assert sum(c["ok"] for c in CASES.values()) == 217
    assert set(DEVIATIONS) <= set(CASES)


def test_compiled_rules_load_into_the_controller_model() -> None:
    """What the compiler emits for the accepted cases (our deviations included) is JSON the
    controller's rule codec reads back into the same rules (nothing silently lost)."""
    from ztnode.wire.rules import rule_from_json, rule_to_json

    for name, case in CASES.items():
        if not case["ok"] or name in DEVIATIONS:
            continue
        out = compile_rules(case["script"])
        for r in out.rules:
            if r["type"] == "ACTION_TEE" and r.get("length", 0) < 0:
                continue  # the reference's -1 length: the codec clamps it, checked in wire tests
            rule = rule_from_json(r)
            assert rule is not None, (name, r)
            assert rule_to_json(rule)["type"] == r["type"]


_ALPHABET = (
    "abcdeflmnoprstuwxyz0123456789 \n\t;#$(),-/:.*"
    + "dropacceptteewatchredirectbreakmacrotagcapincludeorandnot"
)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=200))
def test_any_text_compiles_or_is_a_rule_script_error(script: str) -> None:
    try:
        compile_rules(script)
    except RuleScriptError as e:
        assert e.line >= 0 and e.column >= 0 and e.message


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(sorted({t for c in VECTORS["cases"] for t in c["script"].split()})),
        max_size=30,
    )
)
def test_shuffled_reference_tokens(tokens: list[str]) -> None:
    """Tokens from the reference's own scripts in random order: still only clean answers."""
    with contextlib.suppress(RuleScriptError):
        compile_rules(" ".join(tokens))
