"""The HTML report: one self-contained file (inline CSS, no scripts, nothing fetched) a person
reads: the fleet's verdict and problems, a row per board, the counts per rule, and per board
every rule's result with the evidence that decided it and the token's claims.

Everything a board reported is untrusted: every value goes through html.escape.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .fleet import Fleet
from .policy import OUTCOMES
from .report import clean

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1b1f24;background:#fff}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:2rem 0 .6rem;
border-bottom:1px solid #d0d7de;padding-bottom:.3rem}h3{font-size:1rem;margin:1.5rem 0 .4rem}
.meta{color:#57606a}table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.b{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-weight:600;font-size:.85em}
.pass{background:#dafbe1;color:#116329}.warn{background:#fff8c5;color:#7d4e00}
.fail,.refused{background:#ffebe9;color:#a40e26}.skip,.none{background:#eaeef2;color:#57606a}
.cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:1rem 0}.card{border:1px solid #d0d7de;
border-radius:.5rem;padding:.6rem 1rem;min-width:7rem}.card b{display:block;font-size:1.4rem}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}pre{background:#f6f8fa;
padding:.8rem;overflow:auto;max-height:28rem}.hint{color:#57606a;font-size:.9em}
a{color:#0969da}details{margin:.4rem 0}.nw,td:nth-child(2){white-space:nowrap}
"""


def _e(v: Any, limit: int = 300) -> str:
    return html.escape(clean(v, limit))


def _badge(outcome: str) -> str:
    o = outcome if outcome in (*OUTCOMES, "refused", "none") else "none"
    return f'<span class="b {o}">{html.escape(o)}</span>'


def _anchor(ueid: str) -> str:
    return "b-" + "".join(c for c in ueid if c.isalnum())


def _board_rows(f: Fleet) -> list[str]:
    rows = []
    for b in f.boards:
        c = b.counts
        claims = b.claims
        app = f"{claims.get('swname', '')} {(claims.get('swversion') or [''])[0]}".strip()
        rows.append(
            f'<tr><td><a href="#{_anchor(b.ueid)}">{_e(b.name or b.ueid, 60)}</a><br>'
            f'<code>{_e(b.ueid, 70)}</code></td><td>{_e(app or "-", 60)}</td>'
            f"<td>{_badge(b.verdict)}{' ' + _e(b.refused) if b.refused else ''}</td>"
            + "".join(f'<td class="n">{int(c.get(o, 0))}</td>' for o in OUTCOMES)
            + f"<td>{_e(b.at or 'never')}</td></tr>")
    return rows


def _rule_rows(f: Fleet) -> list[str]:
    return [f"<tr><td>{_e(r['rule'])}</td><td>{_e(r['etsi'])}</td><td>{_e(r['title'])}</td>"
            + "".join(f'<td class="n">{int(r.get(o, 0))}</td>' for o in OUTCOMES) + "</tr>"
            for r in sorted(f.rules.values(), key=lambda r: (r["etsi"], r["rule"]))]


def _board_section(b: Any) -> str:
    out = [f'<h3 id="{_anchor(b.ueid)}">{_e(b.name or b.ueid, 80)} {_badge(b.verdict)}</h3>',
           f'<p class="meta">UEID <code>{_e(b.ueid, 70)}</code> · key <code>{_e(b.kid, 64)}'
           f"</code> · attested {_e(b.at or 'never')}</p>"]
    if b.refused:
        out.append(f"<p>The last token was refused: <b>{_e(b.refused)}</b>.</p>")
    if b.results:
        out.append("<table><tr><th>rule</th><th>ETSI</th><th>result</th><th>fact = value</th>"
                   "<th>expected</th><th>evidence</th></tr>")
        for r in b.results:
            val = r["value"] if r["status"] == "ok" else r["status"]
            hint = (f'<div class="hint">{_e(r.get("hint", ""), 400)}</div>'
                    if r["outcome"] in ("warn", "fail") and r.get("hint") else "")
            out.append(f"<tr><td>{_e(r['title'])}<br><code>{_e(r['rule'])}</code>{hint}</td>"
                       f"<td>{_e(r['etsi'])}</td><td>{_badge(r['outcome'])}</td>"
                       f"<td><code>{_e(r['fact'])} = {_e(val, 80)}</code></td>"
                       f"<td><code>{_e(r['expected'], 80)}</code></td>"
                       f"<td><code>{_e(r['src'], 80)}</code></td></tr>")
        out.append("</table>")
    if b.claims:
        text = json.dumps(b.claims, indent=1, sort_keys=True, default=str)
        out.append("<details><summary>the token's claims (verified)</summary><pre>"
                   f"{html.escape(text)}</pre></details>")
    return "\n".join(out)


def render(f: Fleet, title: str = "mpguard attestation report") -> str:
    verdicts = [b.verdict for b in f.boards]
    cards = "".join(f'<div class="card"><b>{verdicts.count(v)}</b>{_badge(v)}</div>'
                    for v in ("pass", "warn", "fail", "refused", "none"))
    probs = "".join(f"<li><b>{_e(p['kind'])}</b>: {_e(p['detail'])} "
                    f"({', '.join(f'<a href=#{_anchor(u)}>{_e(u, 70)}</a>' for u in p['boards'])})"
                    "</li>" for p in f.problems)
    head = "".join(f'<th class="n">{o}</th>' for o in OUTCOMES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)} {_badge(f.verdict())}</h1>
<p class="meta">{len(f.boards)} board(s) · policy <code>{_e(f.policy or '-')}</code> ·
generated {_e(f.generated)}. Facts come from the boards, signed; judgement from the policy,
rule by rule (ETSI EN 303 645 provisions).</p>
<div class="cards">{cards}</div>
<h2>Fleet problems</h2>
{f'<ul>{probs}</ul>' if probs else '<p>None found.</p>'}
<h2>Boards</h2>
<table id="boards"><tr><th>board</th><th>app</th><th>verdict</th>{head}<th>attested</th></tr>
{''.join(_board_rows(f))}
</table>
<h2>Rules</h2>
<table id="rules"><tr><th>rule</th><th>ETSI</th><th>title</th>{head}</tr>
{''.join(_rule_rows(f))}
</table>
<h2>Evidence per board</h2>
{''.join(_board_section(b) for b in f.boards)}
</body></html>
"""
