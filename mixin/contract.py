"""Checks rendered rules and dashboards against the metric contract the binary emits.

`registry-prober metrics-contract --output json` lists every family, its sample names and its
labels (closed ones with every value). This module reads the PromQL of every rule, alert
description and panel, and reports a family that does not exist, a label the family does not
have, a value a closed label cannot take, and a `by`/`on` label no series involved carries.
promtool checks syntax but knows nothing of the contract; a small tokenizer is enough because
only selectors and grouping clauses are read, not the whole grammar. Standard library only.
"""

import difflib
import re

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{\w+\}|\$\w+)
  | (?P<verb>%q)
  | (?P<duration>(?:[0-9]+(?:ms|s|m|h|d|w|y))+)
  | (?P<number>0x[0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]:@])
""", re.X)

GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"}
# Labels Prometheus puts on every scraped series.
SCRAPE_LABELS = {"job", "instance"}
# The labels a rule may keep: closed sets of the contract and the scrape's own. A digest, tag,
# repository or URL is never a label value, so never an alert label either.
RULE_BY = {"target", "path", "size_class", "step", "reason", "cause", "job", "instance", "le"}
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


class PromQLError(Exception):
    pass


def tokens(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read PromQL at {expr[pos:pos + 20]!r}")
        if m.lastgroup not in ("ws", "comment"):
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


def parse(expr):
    """Selectors (name, [(label, op, value)], token index) and grouping clauses
    (keyword, [labels], token index) of `expr`, plus its tokens."""
    toks = tokens(expr)
    selectors, clauses = [], []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text in GROUPING:
            if nxt == "(":
                end = _close(toks, i + 1)
                labels = [t for k, t in toks[i + 2:end] if k == "ident"]
                clauses.append((text, labels, i))
                i = end
            i += 1
        elif kind == "ident" and text in KEYWORDS:
            i += 1
        elif kind == "ident" and (nxt == "(" or nxt in ("by", "without")):
            i += 1  # a function, or an aggregation: sum (...), sum by (...) (...)
        elif kind == "ident" or text == "{":
            name, start = (text, i + 1) if kind == "ident" else (None, i)
            matchers = []
            if start < len(toks) and toks[start][1] == "{":
                end = _close(toks, start)
                matchers = _matchers(toks[start + 1:end], expr)
                i = end
            selectors.append((name, matchers, start if name is None else start - 1))
            i += 1
        else:
            i += 1
    return toks, selectors, clauses


def _close(toks, i):
    """Index of the bracket closing the one at toks[i]."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    stack = []
    for j in range(i, len(toks)):
        t = toks[j][1]
        if toks[j][0] == "op" and t in pairs:
            stack.append(pairs[t])
        elif toks[j][0] == "op" and stack and t == stack[-1]:
            stack.pop()
            if not stack:
                return j
    raise PromQLError(f"unbalanced {toks[i][1]!r}")


def _matchers(toks, expr):
    out = []
    for part in _split(toks):
        if len(part) != 3 or part[0][0] != "ident" or part[1][1] not in ("=", "!=", "=~", "!~") \
                or part[2][0] not in ("string", "verb"):
            raise PromQLError(f"cannot read matcher {' '.join(t for _, t in part)!r} in {expr!r}")
        value = None if part[2][0] == "verb" else part[2][1][1:-1]
        out.append((part[0][1], part[1][1], value))
    return out


def _split(toks):
    parts, cur = [], []
    for tok in toks:
        if tok[1] == ",":
            parts.append(cur)
            cur = []
        else:
            cur.append(tok)
    if cur:
        parts.append(cur)
    return parts


def _range_of_argument(toks, at):
    """Token range of the expression an aggregation's `by (...)` at `at` applies to."""
    end_list = _close(toks, at + 1)
    if at > 0 and toks[at - 1][1] == ")":  # sum (expr) by (labels)
        depth = 0
        for j in range(at - 1, -1, -1):
            t = toks[j][1]
            depth += t == ")"
            depth -= t == "("
            if depth == 0:
                return j, at
    if end_list + 1 < len(toks) and toks[end_list + 1][1] == "(":  # sum by (labels) (expr)
        return end_list + 1, _close(toks, end_list + 1)
    raise PromQLError("cannot find what a `by` clause aggregates")


class Contract:
    def __init__(self, data, extra_labels=(), recorded=None):
        self.families = {f["name"]: f for f in data["families"]}
        self.samples = {s: f for f in data["families"] for s in f["samples"]}
        # labels a series may carry besides its family's: the scrape's and the configured
        # group/scope labels (the chart's `location`)
        self.extra = set(SCRAPE_LABELS) | set(extra_labels)
        self.recorded = dict(recorded or {})

    def labels_of(self, name):
        """name -> ({label: closed values or None}), or None when unknown."""
        if name in self.recorded:
            return {label: None for label in self.recorded[name]}
        if name == "up":
            return {}
        # only sample names are series: a histogram is queried as _bucket, _sum or _count
        family = self.samples.get(name)
        if family is None:
            return None
        labels = {lab["name"]: lab.get("values") for lab in family["labels"]}
        if family["type"] == "histogram" and name.endswith("_bucket"):
            labels["le"] = None
        return labels

    def record(self, name, expr):
        """A recording rule of the mixin: its series may carry any label of what it reads."""
        _, selectors, clauses = parse(expr)
        labels = set()
        for sel, _, _ in selectors:
            labels |= set(self.labels_of(sel) or {})
        for _, names, _ in clauses:
            labels |= set(names)
        self.recorded[name] = labels - {"le"}

    def check(self, expr, where):
        """Problems of one PromQL expression (or Grafana `label_values(...)` query)."""
        m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*", expr, re.S)
        if m:
            problems = self.check(m.group(1), where)
            for name, _, _ in parse(m.group(1))[1]:
                known = self.labels_of(name)
                if known is not None and m.group(2) not in known and m.group(2) not in self.extra:
                    problems.append(f"{where}: label_values asks {name} for label {m.group(2)!r}, "
                                    f"which it does not have (labels: {_names(known)})")
            return problems
        try:
            toks, selectors, clauses = parse(expr)
        except PromQLError as err:
            return [f"{where}: {err}"]
        problems = []
        for name, matchers, _ in selectors:
            problems += self._selector(name, matchers, where)
        for keyword, names, at in clauses:
            if keyword in ("by", "without"):
                try:
                    lo, hi = _range_of_argument(toks, at)
                except PromQLError as err:
                    problems.append(f"{where}: {err}")
                    continue
                inside = [s for s in selectors if lo <= s[2] <= hi]
            else:
                inside = selectors  # a join: either side may carry the label
            if any(self.labels_of(s[0]) is None for s in inside):
                continue  # an unknown family is reported as such
            carried = set(self.extra)
            for name, _, _ in inside:
                carried |= set(self.labels_of(name))
            for label in names:
                if label not in carried:
                    problems.append(f"{where}: {keyword} ({', '.join(names)}) names {label!r}, which "
                                    f"none of {sorted({s[0] for s in inside if s[0]})} carries")
        # a selector repeated in one expression is one problem
        return list(dict.fromkeys(problems))

    def _selector(self, name, matchers, where):
        if name is None:
            return [f"{where}: a selector without a metric name"]
        labels = self.labels_of(name)
        if labels is None:
            family = self.families.get(name)
            if family is not None:
                return [f"{where}: {name} is a {family['type']}: query one of its samples "
                        f"({', '.join(family['samples'])})"]
            near = difflib.get_close_matches(name, list(self.samples), 1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            return [f"{where}: {name} is not a family of the metric contract{hint}"]
        problems = []
        for label, op, value in matchers:
            shown = f'{name}{{{label}{op}"{value}"}}' if value is not None else f"{name}{{{label}{op}%q}}"
            if label not in labels and label not in self.extra:
                problems.append(f"{where}: {shown}: {name} has no label {label!r} "
                                f"(labels: {_names(labels)})")
                continue
            values = labels.get(label)
            # open labels (target, path, size_class, version) take any value; so do Grafana
            # variables and a description's %q (filled with the alert's own labels)
            if values is None or value is None or "$" in value or value == "":
                continue
            bad = _values_not_matched(op, value, values)
            if bad:
                problems.append(f"{where}: {shown}: {label} cannot be {', '.join(map(repr, bad))} "
                                f"(values: {', '.join(values)})")
        return problems


def _names(labels):
    return ", ".join(sorted(labels)) or "none"


def _values_not_matched(op, value, values):
    """The parts of a matcher's value that match none of a closed label's values."""
    if op in ("=", "!="):
        return [] if value in values else [value]
    # a regex: each alternative of a plain alternation on its own, else the whole pattern
    alternatives = value.split("|") if not re.search(r"[()\[\]]", value) else [value]
    bad = []
    for alt in alternatives:
        try:
            if not any(re.fullmatch(alt, v) for v in values):
                bad.append(alt)
        except re.error:
            bad.append(alt)
    return bad


# --- what the schema and the contract cannot know --------------------------------------------

def lint_rules(groups, group_labels):
    """Alerts carry only `severity` as a static label, keep only closed labels, and link a runbook."""
    problems = []
    allowed = RULE_BY | set(group_labels)
    for group in groups:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            if "alert" in rule:
                if set(rule.get("labels", {})) != {"severity"}:
                    problems.append(f"{name}: static labels other than severity: {sorted(rule.get('labels', {}))}")
                missing = {"summary", "description", "runbook_url"} - set(rule.get("annotations", {}))
                if missing:
                    problems.append(f"{name}: no {', '.join(sorted(missing))} annotation")
            for keyword, names, _ in parse(rule["expr"])[2]:
                kept = set(names) - allowed
                if keyword == "by" and kept:
                    problems.append(f"{name}: keeps label(s) {sorted(kept)}: only closed labels, "
                                    f"the scrape's and the group labels may be alert labels")
    return problems


def lint_dashboard(d, scope):
    """Every panel has a unit, the data source variable and its own refIds; every selector is
    limited to each scope variable; a join matches on labels its sides keep."""
    uid = d.get("uid", "")
    problems = []
    if not re.fullmatch(r"[a-z0-9-]{1,40}", uid):
        problems.append(f"{d.get('title')}: uid {uid!r} is not a stable short id")
    variables = {v["name"] for v in d["templating"]["list"]} | GRAFANA_VARIABLES
    ids = [p["id"] for p in d["panels"]]
    if len(ids) != len(set(ids)):
        problems.append(f"{uid}: duplicate panel ids")
    scoped = [f'{label}=~"${label}"' for label in scope]
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        where = f"{uid} panel {p['id']} ({p['title']})"
        if not p["fieldConfig"]["defaults"].get("unit"):
            problems.append(f"{where}: no unit")
        if p.get("datasource") != DATASOURCE or any(t.get("datasource") != DATASOURCE for t in p["targets"]):
            problems.append(f"{where}: not on the ${{datasource}} variable")
        refs = [t["refId"] for t in p["targets"]]
        if not refs or len(refs) != len(set(refs)):
            problems.append(f"{where}: no queries or duplicate refIds")
        for o in p["fieldConfig"]["overrides"]:
            if o["matcher"]["id"] == "byFrameRefID" and o["matcher"]["options"] not in refs:
                problems.append(f"{where}: override for missing refId {o['matcher']['options']}")
        for t in p["targets"]:
            problems += _lint_query(t["expr"], f"{where} {t['refId']}", scoped, variables)
    return problems


def _lint_query(expr, where, scoped, variables):
    problems = []
    for var in re.findall(r"\$\{?(\w+)\}?", expr):
        if var == "datasource":
            problems.append(f"{where}: $datasource inside a query")
        elif var not in variables:
            problems.append(f"{where}: unknown variable ${var}")
    try:
        _, selectors, clauses = parse(expr)
    except PromQLError:
        return problems  # Contract.check reports it
    for name, matchers, _ in selectors:
        have = {f'{label}{op}"{value}"' for label, op, value in matchers}
        for want in scoped:
            if want not in have:
                problems.append(f"{where}: {name} is not limited by {want}")
    # A `by` that drops a label a join matches on makes the join compare it with "" and
    # silently match nothing.
    kept = [set(names) for keyword, names, _ in clauses if keyword == "by"]
    for keyword, names, _ in clauses:
        if keyword in ("on", "ignoring"):
            for by in kept:
                missing = sorted(set(names) - by) if keyword == "on" else []
                if missing:
                    problems.append(f"{where}: joins on {missing} that a `by ({', '.join(sorted(by))})` drops")
    return problems
