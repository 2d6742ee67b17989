"""Reports of appraisals: a terminal table (rich), JSON, and JUnit XML (one testcase per rule
and board, so CI dashboards show each rule). The HTML report is mpguard.attest.html.

Everything a board reported is untrusted text: the table escapes rich markup, the XML is
built with ElementTree (escaped), and control characters are replaced.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .fleet import Fleet

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim",
         "refused": "bold red", "none": "dim"}


def clean(v: Any, limit: int = 200) -> str:
    """A value as one printable line (no control characters), at most `limit` characters."""
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def table(fleet: Fleet, color: bool = False, width: int = 120) -> str:
    con = Console(file=io.StringIO(), force_terminal=color, color_system="standard" if color else None,
                  width=width, highlight=False)
    for b in fleet.boards:
        title = f"{escape(clean(b.name or b.ueid))}: [{STYLE.get(b.verdict, '')}]{b.verdict.upper()}[/]"
        if b.refused:
            con.print(f"{title} ({escape(clean(b.refused))})")
            continue
        if not b.results:  # never attested (in the period): a line, not an empty table
            con.print(f"{escape(clean(b.name or b.ueid))}: [dim]not attested[/] "
                      "(attest it: `mpguard attest --port P`)")
            continue
        t = Table(title=title, title_justify="left", show_lines=False)
        for col in ("rule", "ETSI", "result", "value", "expected"):
            t.add_column(col)
        for r in b.results:
            value = r["value"] if r["status"] == "ok" else r["status"]
            t.add_row(escape(clean(r["rule"])), escape(clean(r["etsi"])),
                      f"[{STYLE[r['outcome']]}]{r['outcome']}[/]", escape(clean(value, 40)),
                      escape(clean(r["expected"], 40)))
        con.print(t)
        hints = [r for r in b.results if r["outcome"] in ("warn", "fail") and r.get("hint")]
        for r in hints:
            con.print(f"  [{STYLE[r['outcome']]}]{r['outcome']}[/] {escape(clean(r['rule']))}: "
                      f"{escape(clean(r['hint'], 300))}")
        c = b.counts
        con.print(f"  {c.get('pass', 0)} pass, {c.get('warn', 0)} warn, {c.get('fail', 0)} fail, "
                  f"{c.get('skip', 0)} skipped")
    for p in fleet.problems:
        con.print(f"[bold red]fleet[/] {escape(p['kind'])}: {escape(clean(p['detail']))} "
                  f"({escape(clean(', '.join(p['boards'])))})")
    out = con.file.getvalue()  # type: ignore[attr-defined]
    return str(out).rstrip("\n")


def junit(fleet: Fleet) -> bytes:
    """JUnit XML: a testsuite per board, a testcase per rule (classname: its ETSI provision).
    A fail is a <failure>; a warn or a skip is a <skipped> saying which (CI gates on the
    exit code); a refused token an <error>. Fleet problems are a testsuite of their own."""
    root = ET.Element("testsuites", name="mpguard attest")
    for b in fleet.boards:
        s = ET.SubElement(root, "testsuite", name=f"mpguard.attest.{clean(b.name or b.ueid)}",
                          timestamp=b.at, tests="0", failures="0", skipped="0", errors="0")
        n = fails = skipped = errors = 0
        if b.refused:
            tc = ET.SubElement(s, "testcase", classname=s.get("name", ""), name="token verified")
            ET.SubElement(tc, "error", message=clean(b.refused), type="refused")
            n, errors = 1, 1
        for r in b.results:
            n += 1
            tc = ET.SubElement(s, "testcase", classname=f"ETSI EN 303 645 {clean(r['etsi'])}",
                               name=f"{clean(r['rule'])}: {clean(r['title'])}")
            msg = (f"{r['outcome']}: {clean(r['fact'])} is "
                   f"{clean(r['value']) if r['status'] == 'ok' else r['status']}, "
                   f"expected {clean(r['expected'])}")
            if r["outcome"] == "fail":
                fails += 1
                f = ET.SubElement(tc, "failure", message=msg, type="fail")
                f.text = f"{msg}\nevidence: {clean(r['src'])}\nhint: {clean(r.get('hint', ''), 500)}"
            elif r["outcome"] in ("warn", "skip"):
                skipped += 1
                ET.SubElement(tc, "skipped", message=msg)
            ET.SubElement(tc, "system-out").text = f"evidence: {clean(r['src'])}"
        s.set("tests", str(n))
        s.set("failures", str(fails))
        s.set("skipped", str(skipped))
        s.set("errors", str(errors))
    if fleet.problems:
        s = ET.SubElement(root, "testsuite", name="mpguard.fleet", tests=str(len(fleet.problems)),
                          failures=str(len(fleet.problems)), skipped="0", errors="0")
        for p in fleet.problems:
            tc = ET.SubElement(s, "testcase", classname="mpguard.fleet", name=p["kind"])
            ET.SubElement(tc, "failure", message=clean(p["detail"]), type=p["kind"])
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def as_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
