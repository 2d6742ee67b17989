"""The appraisal policy: TOML rules, each judging one fact and naming the ETSI EN 303 645
provision it evidences; results per rule with the evidence that decided them.

A result is pass / warn / fail / skip, never a blanket "compliant". The verdict of a board is
the worst result (fail > warn > pass; skip does not count). Results follow the shape of an
attestation result (RFC 9334 section 3; IETF EAR, mpguard.attest.ear): per rule, the fact,
its status and value, what was expected, and where in the token it came from.

Policy file (the default ships as mpguard/attest/default_policy.toml):

    [policy]  id, version, title
    [[rule]]  id, title, etsi, fact (one of mpguard.attest.facts.FACTS),
              severity = "fail" | "warn",
              unsupported = "pass" | "warn" | "fail" | "skip"  (default "warn"),
              one of: equals, in, not_in, min, max, min_version;  hint, tv (optional)

equals, in and not_in compare value and type (true is not 1); min_version passes a text only.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import AttestError
from .facts import FACTS, Fact

OUTCOMES = ("pass", "warn", "fail", "skip")
TESTS = ("equals", "in", "not_in", "min", "max", "min_version")
TV_CLAIMS = ("instance-identity", "configuration", "executables", "file-system", "hardware",
             "runtime-opaque", "storage-opaque", "sourced-data")
_RANK = {"pass": 0, "skip": 0, "warn": 1, "fail": 2}


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in str(v).split("-")[0].split("."))


def _same(v: Any, e: Any) -> bool:
    return bool(type(v) is type(e) and v == e)


@dataclass
class Rule:
    id: str
    title: str
    etsi: str
    fact: str
    severity: str
    test: str
    expect: Any
    unsupported: str = "warn"
    hint: str = ""
    tv: str = ""

    def passes(self, v: Any) -> bool:
        t, e = self.test, self.expect
        if t == "equals":
            return _same(v, e)
        if t == "in":  # by value and type, as equals: True is not 1, 0 is not in [false]
            return any(_same(v, x) for x in e)
        if t == "not_in":
            return not any(_same(v, x) for x in e)
        if t == "min_version":
            return isinstance(v, str) and _version(v) >= _version(e)  # 2 is no version text
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return v >= e if t == "min" else v <= e

    @functools.cached_property
    def expected(self) -> str:
        t, e = self.test, self.expect
        return {"equals": f"= {e!r}", "in": f"in {e!r}", "not_in": f"not in {e!r}",
                "min": f">= {e}", "max": f"<= {e}", "min_version": f">= {e}"}[t]


@dataclass
class Result:
    rule: str
    title: str
    etsi: str
    outcome: str
    severity: str
    fact: str
    status: str
    value: Any
    expected: str
    src: str
    hint: str
    tv: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Appraisal:
    policy: str
    results: list[Result] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        worst = max((_RANK[r.outcome] for r in self.results), default=0)
        return ("pass", "warn", "fail")[worst]

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(OUTCOMES, 0)
        for r in self.results:
            c[r.outcome] += 1
        return c


@dataclass
class Policy:
    id: str
    version: int
    title: str
    rules: list[Rule]

    @property
    def ident(self) -> str:
        return f"{self.id}@{self.version}"

    def appraise(self, facts: dict[str, Fact]) -> Appraisal:
        out = Appraisal(self.ident)
        for r in self.rules:
            f = facts.get(r.fact) or Fact("unsupported", None, "", "not reported")
            if f.status != "ok":
                outcome = r.unsupported
            else:
                try:
                    outcome = "pass" if r.passes(f.value) else r.severity
                except (TypeError, ValueError):
                    outcome = r.severity  # a value of the wrong shape never passes
            out.results.append(Result(r.id, r.title, r.etsi, outcome, r.severity, r.fact,
                                      f.status, f.value, r.expected, f.src, r.hint, r.tv))
        return out


def _bad(msg: str) -> AttestError:
    return AttestError("bad_policy", msg)


def _rule(d: Any, i: int) -> Rule:
    if not isinstance(d, dict):
        raise _bad(f"rule {i} is not a table")
    rid = d.get("id")
    where = f"rule {rid or i}"
    for k in ("id", "title", "etsi", "fact"):
        if not isinstance(d.get(k), str) or not d[k]:
            raise _bad(f"{where}: `{k}` must be a non-empty string")
    if d["fact"] not in FACTS:  # never "ok": the rule would only ever give `unsupported`
        raise _bad(f"{where}: no fact {d['fact']!r}; the facts are {', '.join(FACTS)}")
    if d.get("severity") not in ("fail", "warn"):
        raise _bad(f"{where}: severity must be fail or warn")
    if d.get("unsupported", "warn") not in OUTCOMES:
        raise _bad(f"{where}: unsupported must be one of {', '.join(OUTCOMES)}")
    tests = [t for t in TESTS if t in d]
    if len(tests) != 1:
        raise _bad(f"{where}: give exactly one of {', '.join(TESTS)}")
    t = tests[0]
    e = d[t]
    if t in ("in", "not_in") and not isinstance(e, list):
        raise _bad(f"{where}: `{t}` must be a list")
    if t in ("min", "max") and (isinstance(e, bool) or not isinstance(e, (int, float))):
        raise _bad(f"{where}: `{t}` must be a number")
    if t == "min_version":
        try:
            _version(e)
        except ValueError:
            raise _bad(f"{where}: min_version must look like 1.23.0") from None
    tv = d.get("tv", "")
    if tv and tv not in TV_CLAIMS:
        raise _bad(f"{where}: tv must be one of {', '.join(TV_CLAIMS)}")
    unknown = set(d) - {"id", "title", "etsi", "fact", "severity", "unsupported", "hint", "tv", t}
    if unknown:
        raise _bad(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    return Rule(rid, d["title"], d["etsi"], d["fact"], d["severity"], t, e,
                d.get("unsupported", "warn"), str(d.get("hint", "")), tv)


def parse(text: str) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _bad(f"not TOML: {e}") from None
    head = data.get("policy", {})
    if not isinstance(head, dict) or not isinstance(head.get("id"), str):
        raise _bad("[policy] needs an id")
    rules = data.get("rule")
    if not isinstance(rules, list) or not rules:
        raise _bad("no [[rule]] tables")
    parsed = [_rule(r, i) for i, r in enumerate(rules)]
    ids = [r.id for r in parsed]
    if len(set(ids)) != len(ids):
        raise _bad("rule ids must be unique")
    ver = head.get("version", 1)
    if not isinstance(ver, int) or isinstance(ver, bool):
        raise _bad("[policy] version must be an integer")
    return Policy(head["id"], ver, str(head.get("title", "")), parsed)


def default_text() -> str:
    return resources.files("mpguard.attest").joinpath("default_policy.toml").read_text()


def load(path: str | Path | None = None) -> Policy:
    """The policy in `path`, or the default one."""
    if path is None:
        return parse(default_text())
    try:
        return parse(Path(path).read_text())
    except OSError as e:
        raise AttestError("bad_policy", f"cannot read {path}: {e.strerror}") from None
