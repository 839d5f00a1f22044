"""Checks that mixin/README.md says what the mixin does: its `_config` tables list every field
with its default, and its vendoring example renders, as a user's checkout would, into rules and
dashboards that group by `location` and select the example's job. Standard library only."""

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import contract

# Where `jb install github.com/registry-prober/registry-prober/mixin` puts the mixin.
VENDORED = "github.com/registry-prober/registry-prober/mixin"


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else len(text)]


def check_tables(path, config):
    """The reference tables hold every field of _config with its default, and nothing else."""
    rows = re.findall(r"^\| `(registryProber\w+|RegistryProber\w+)` \| `(.*?)` \|", _section(path.read_text(), "## `_config` reference"), re.M)
    top = {name: cell for name, cell in rows if name.startswith("registryProber")}
    alerts = {name: cell for name, cell in rows if name.startswith("RegistryProber")}
    # the cells are jsonnet: let jsonnet read them
    code = "{ top: { %s }, alerts: { %s } }" % (
        ", ".join(f"{k}: {v}" for k, v in top.items()),
        ", ".join(f"{k}: {{ {v} }}" for k, v in alerts.items()))
    out = subprocess.run(["jsonnet", "-e", code], capture_output=True, text=True)
    if out.returncode != 0:
        return [f"{path.name}: the _config tables are not jsonnet: {out.stderr.strip()}"]
    table = json.loads(out.stdout)
    want_top = {k: v for k, v in config.items() if k != "registryProberAlerts"}
    want_alerts = {name: {k: v for k, v in a.items() if k != "enabled"} for name, a in config["registryProberAlerts"].items()}
    problems = []
    for name in sorted(set(want_top) | set(table["top"])):
        if table["top"].get(name) != want_top.get(name):
            problems.append(f"{path.name}: _config.{name} is {json.dumps(want_top.get(name))}, the table says {json.dumps(table['top'].get(name))}")
    for name in sorted(set(want_alerts) | set(table["alerts"])):
        if table["alerts"].get(name) != want_alerts.get(name):
            problems.append(f"{path.name}: _config.registryProberAlerts.{name} is {json.dumps(want_alerts.get(name))}, "
                            f"the table says {json.dumps(table['alerts'].get(name))}")
    problems += [f"{path.name}: {name} is not enabled by default, the table says it is"
                 for name, a in config["registryProberAlerts"].items() if a.get("enabled") is not True]
    return problems


def check_example(path, mixin_dir, data, render, check_render):
    """Runs the README's example (its jsonnet block, then the shell block that renders it) in a
    directory laid out as after `jb install`, and checks what it renders."""
    text = path.read_text()
    site = re.findall(r"```jsonnet\n(// registry-prober.libsonnet:.*?)```", text, re.S)
    shell = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "jsonnet -J vendor" in b]
    if len(site) != 1 or len(shell) != 1:
        return [f"{path.name}: expected one jsonnet block registry-prober.libsonnet and one shell block "
                f"rendering it, found {len(site)} and {len(shell)}"]
    tmp = Path(tempfile.mkdtemp(prefix="mixin-example-"))
    try:
        vendor = tmp / "vendor" / VENDORED
        vendor.parent.mkdir(parents=True)
        vendor.symlink_to(mixin_dir, target_is_directory=True)
        (tmp / "registry-prober.libsonnet").write_text(site[0])
        r = render(None, entry=tmp / "registry-prober.libsonnet", jpaths=[tmp / "vendor"])
        problems, _ = check_render(r, data, f"{path.name} example")
        problems += _example_holds(r, path.name)
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", shell[0]], cwd=tmp, capture_output=True, text=True)
        files = sorted(p.name for p in (tmp / "out").iterdir()) if (tmp / "out").is_dir() else []
        want = sorted(["prometheus_alerts.yaml", "prometheus_rules.yaml", *r["dashboards"]])
        if out.returncode != 0 or files != want:
            problems.append(f"{path.name}: the example's shell block wrote {files}, not {want}: "
                            f"{(out.stdout + out.stderr).strip()}")
        return problems
    finally:
        shutil.rmtree(tmp)


def _example_holds(r, where):
    """What the example says it does: location in every by/on, its job in every selector of
    the prober's series, its runbook, SweepsFailing off, 30d certificate warnings."""
    problems = []
    recorded = {rule["record"] for g in r["groups"] for rule in g["rules"] if "record" in rule}
    alerts = {rule["alert"]: rule for g in r["groups"] for rule in g["rules"] if "alert" in rule}
    for g in r["groups"]:
        for rule in g["rules"]:
            name = rule.get("alert") or rule.get("record")
            _, selectors, clauses = contract.parse(rule["expr"])
            problems += [f"{where}: {name}: {kw} ({', '.join(labels)}) without location"
                         for kw, labels, _ in clauses if kw in ("by", "on") and "location" not in labels]
            problems += [f"{where}: {name}: {sel} does not select job=\"registry-prober-prod\""
                         for sel, matchers, _ in selectors
                         if sel not in recorded and ("job", "=", "registry-prober-prod") not in matchers]
            url = rule.get("annotations", {}).get("runbook_url", "https://wiki.example.com/registry-prober/runbook#")
            if not url.startswith("https://wiki.example.com/registry-prober/runbook#"):
                problems.append(f"{where}: {name} links {url}")
    if "RegistryProberSweepsFailing" in alerts:
        problems.append(f"{where}: RegistryProberSweepsFailing is rendered though the example disables it")
    tls = [rule["expr"] for g in r["groups"] for rule in g["rules"] if rule.get("alert") == "RegistryProberTLSCertificateExpiring"]
    if not any("< 2592000" in expr for expr in tls):
        problems.append(f"{where}: the certificate warning does not start 30d (2592000s) before expiry")
    return list(dict.fromkeys(problems))
