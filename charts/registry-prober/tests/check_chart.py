#!/usr/bin/env python3
"""Checks the registry-prober chart with the real Helm engine (helm-python-sdk), offline.

Run through scripts/test-chart, which makes the venv this needs (helm-python-sdk,
kubernetes-validate). Every check prints one `ok:` or `FAIL:` line; the last line counts them.

  - Chart.yaml's appVersion is the workspace crate version; files/ is a fresh render of mixin/
    (mixin/build --check, which also checks every query against the binary's metric contract)
  - the schema's `config` keys are exactly the fields of the Raw* structs of prober/src/config/
  - helm lint (strict) passes for the defaults and every ci/*-values.yaml
  - each renders; non-CRD objects pass kubernetes-validate --strict (oldest and newest
    supported Kubernetes); ServiceMonitor and PrometheusRule are checked structurally, the
    rules also by promtool (check rules, and alerts/tests/ run against the chart's copy)
  - security context, probes, labels, selectors, the config's listen/instance, sharding, the
    files the config names are mounted, and the real prober accepts every rendered config
  - the checksum/config annotation changes when the config changes (and only then)
  - every tests/bad-values/*.yaml is rejected with the message its `# expect:` line names
"""

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parent.parent
ROOT = CHART.parent.parent
KUBE_VERSIONS = ("1.25.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
RELEASE, NAMESPACE = "rp", "probers"
STANDARD_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/component",
                   "app.kubernetes.io/managed-by")
# Config keys that name files the prober reads at load time.
FILE_KEYS = ("password_file", "ca_file", "client_cert_file", "client_key_file", "docker_config",
             "headers_file")

passed = 0
failed = 0


def ok(msg):
    global passed
    passed += 1
    print(f"ok: {msg}")


def fail(msg):
    global failed
    failed += 1
    print(f"FAIL: {msg}")


def check(cond, msg, detail=""):
    if cond:
        ok(msg)
    else:
        fail(f"{msg}{': ' + detail if detail else ''}")
    return cond


def load_values(path):
    return yaml.safe_load(path.read_text()) if path else None


def render(values, name=RELEASE):
    """Renders the chart; returns (objects, total bytes, notes)."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name=name, namespace=NAMESPACE)
    objects, size, notes = [], 0, ""
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                size += len(yaml.safe_dump(doc).encode())
                objects.append(doc)
    return objects, size, notes


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind):
    found = by_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


# --- checks that do not depend on values ---------------------------------------------------

def check_versions():
    cargo = (ROOT / "Cargo.toml").read_text()
    m = re.search(r"^\[workspace\.package\][^\[]*?^version\s*=\s*\"([^\"]+)\"", cargo, re.M | re.S)
    crate = m.group(1) if m else None
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    check(crate is not None and chart["appVersion"] == crate,
          f"Chart.yaml appVersion ({chart['appVersion']}) is the crate version ({crate})",
          "bump appVersion in charts/registry-prober/Chart.yaml with the crate version")


def check_generated():
    out = subprocess.run([str(ROOT / "mixin" / "build"), "--check"], capture_output=True, text=True)
    check(out.returncode == 0,
          "files/ (rules and dashboards) are a fresh render of mixin/ (mixin/build --check)",
          (out.stdout + out.stderr).strip())


def raw_struct_fields():
    """prober/src/config/*.rs: Raw struct name -> its field names."""
    src = "\n".join(p.read_text() for p in sorted((ROOT / "prober/src/config").glob("*.rs")))
    vis = r"pub(?:\(crate\))?"
    structs = {}
    for m in re.finditer(vis + r" struct (Raw\w+) \{(.*?)\n\}", src, re.S):
        structs[m.group(1)] = set(re.findall(r"^\s*" + vis + r" (\w+):", m.group(2), re.M))
    return structs


def check_schema_matches_config_rs():
    schema = json.loads((CHART / "values.schema.json").read_text())
    defs = schema["definitions"]

    def props(node):
        node = defs[node["$ref"].split("/")[-1]] if "$ref" in node else node
        return node

    config = schema["properties"]["config"]
    target = config["properties"]["targets"]["items"]
    t = target["properties"]
    pairs = {
        # `listen` is the chart's: the pod's address.
        "RawConfig": (config, {"listen"}),
        "RawDefaults": (config["properties"]["defaults"], set()),
        "RawOtlp": (config["properties"]["otlp"], set()),
        "RawTarget": (target, set()),
        "RawSizeClass": (t["sizes"]["items"], set()),
        "RawPath": (t["paths"]["items"], set()),
        "RawCanaries": (t["canaries"], set()),
        "RawMount": (t["mount"], set()),
        "RawHygiene": (t["hygiene"], set()),
        "RawArtifact": (t["artifact"], set()),
        "RawTls": (props(t["tls"]), set()),
        "RawAuth": (props(t["auth"]), set()),
        "RawImage": (t["image"], set()),
        "RawUpload": (t["upload"], set()),
        "RawCleanup": (t["cleanup"], set()),
    }
    structs = raw_struct_fields()
    for name, (node, chart_owned) in pairs.items():
        have = set(node["properties"])
        want = structs.get(name, set()) - chart_owned
        check(have == want and node.get("additionalProperties") is False,
              f"schema config keys of {name} are exactly prober/src/config/'s",
              f"missing {sorted(want - have)}, unknown {sorted(have - want)}")
    unchecked = set(structs) - set(pairs) - {"RawSize"}
    check(not unchecked, "every Raw* struct of prober/src/config/ has its place in the schema",
          f"not in the schema: {sorted(unchecked)}")


def check_package(tmp):
    """The packaged chart carries files/ and the templates, not the tests."""
    archive = helm.package(CHART, destination=tmp)
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    want = {"Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt",
            "files/registry-prober.rules.yml", "files/dashboards/registry-prober-overview.json",
            "files/dashboards/registry-prober-details.json"}
    check(want <= names and not any(n.startswith("tests/") for n in names),
          f"helm package: {Path(archive).name} ({Path(archive).stat().st_size} bytes) has the "
          "templates and files/, not tests/", f"missing {sorted(want - names)}")


def check_bad_values():
    files = sorted((CHART / "tests/bad-values").glob("*.yaml"))
    check(len(files) >= 8, f"{len(files)} bad-values cases")
    for path in files:
        text = path.read_text()
        m = re.search(r"^# expect: (.+)$", text, re.M)
        if not m:
            fail(f"{path.name} has no '# expect: <message>' line")
            continue
        want = m.group(1).strip()
        try:
            render(yaml.safe_load(text))
        except helm.HelmError as e:
            got = str(e)
            check(want in got, f"bad-values/{path.name} is rejected: {want}", got)
            continue
        fail(f"bad-values/{path.name} renders, but must be rejected with: {want}")


# --- checks of one rendered values file ----------------------------------------------------

def workload(objects):
    found = by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet")
    assert len(found) == 1, f"{len(found)} workloads"
    return found[0]


def check_kubernetes_validate(objects, label, tmp, validator):
    plain = [o for o in objects if o["kind"] not in CRD_KINDS]
    path = tmp / f"{label}.yaml"
    path.write_text(yaml.safe_dump_all(plain))
    for version in KUBE_VERSIONS:
        out = subprocess.run([validator, "--strict", "--quiet", "-k", version, str(path)],
                             capture_output=True, text=True)
        check(out.returncode == 0,
              f"{label}: {len(plain)} objects pass kubernetes-validate --strict -k {version}",
              (out.stdout + out.stderr).strip()[-2000:])


def check_labels(objects, label, values):
    name = (values or {}).get("nameOverride") or "registry-prober"
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": RELEASE}
    bad = [f"{o['kind']}/{o['metadata']['name']}" for o in objects
           if not all(k in o["metadata"].get("labels", {}) for k in STANDARD_LABELS)]
    check(not bad, f"{label}: every object has the app.kubernetes.io labels", f"missing on {bad}")
    w = workload(objects)
    pod_labels = w["spec"]["template"]["metadata"]["labels"]
    check(w["spec"]["selector"]["matchLabels"] == selector
          and all(pod_labels.get(k) == v for k, v in selector.items()),
          f"{label}: {w['kind']} selects its pods by the selector labels")
    svc = one(objects, "Service")
    check(svc["spec"]["selector"] == selector, f"{label}: the Service selects the pods")
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        check(pdb["spec"]["selector"]["matchLabels"] == selector,
              f"{label}: the PodDisruptionBudget selects the pods")
    for np in by_kind(objects, "NetworkPolicy"):
        check(np["spec"]["podSelector"]["matchLabels"] == selector,
              f"{label}: the NetworkPolicy selects the pods")


def check_pod(objects, label):
    w = workload(objects)
    pod = w["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532
          and psc.get("seccompProfile") == {"type": "RuntimeDefault"},
          f"{label}: pod runs as non-root 65532 with the RuntimeDefault seccomp profile", str(psc))
    check(pod.get("automountServiceAccountToken") is False,
          f"{label}: no Kubernetes API token in the pod")
    (c,) = pod["containers"]
    sc = c.get("securityContext", {})
    check(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
          and sc.get("capabilities", {}).get("drop") == ["ALL"],
          f"{label}: container: no privilege escalation, read-only root, all capabilities dropped",
          str(sc))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    check(live["path"] == "/healthz" and ready["path"] == "/readyz"
          and ports.get(live["port"]) == 9115 and ports.get(ready["port"]) == 9115,
          f"{label}: liveness /healthz, readiness /readyz, on port 9115")
    check("memory" in c.get("resources", {}).get("limits", {})
          and "cpu" in c.get("resources", {}).get("requests", {}),
          f"{label}: resources: requests and a memory limit")
    check(bool(re.fullmatch(r"[0-9a-f]{64}",
                            w["spec"]["template"]["metadata"]["annotations"].get("checksum/config", ""))),
          f"{label}: pods carry a checksum/config annotation")


def config_files(objects, values):
    cm = [o for o in by_kind(objects, "ConfigMap") if not o["metadata"]["name"].endswith("-dashboards")]
    assert len(cm) == 1, f"{len(cm)} config ConfigMaps"
    return {k: yaml.safe_load(v) for k, v in cm[0]["data"].items()}


def walk_files(node, found):
    """Collects (key, path) of every file the config names."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in FILE_KEYS and isinstance(v, str):
                found.append((k, v))
            else:
                walk_files(v, found)
    elif isinstance(node, list):
        for v in node:
            walk_files(v, found)
    return found


def expected_instance(values):
    config = (values or {}).get("config", {})
    if "instance" in config:
        return config["instance"]
    location = (values or {}).get("location", "")
    if not location:
        return None
    clean = re.sub(r"[^a-z0-9]", "", location.lower())
    if clean == location and len(clean) <= 16:
        return clean
    return clean[:8] + hashlib.sha256(location.encode()).hexdigest()[:8]


def shard_of(name, shards):
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % shards


def check_config(objects, label, values, merged):
    files = config_files(objects, values)
    w = workload(objects)
    (c,) = w["spec"]["template"]["spec"]["containers"]
    fullname = w["metadata"]["name"]
    for name, config in files.items():
        check(config.get("listen") == "0.0.0.0:9115", f"{label}: {name} listens on 0.0.0.0:9115")
        check(config.get("instance") == expected_instance(values),
              f"{label}: {name} has instance {expected_instance(values)!r}", str(config.get("instance")))
    targets = [t["name"] for t in merged["config"]["targets"]]
    if merged["sharding"]["enabled"]:
        n = merged["sharding"]["shards"]
        check(w["kind"] == "StatefulSet" and w["spec"]["replicas"] == n,
              f"{label}: sharded: a StatefulSet of {n} pods")
        check(sorted(files) == sorted(f"{fullname}-{i}.yml" for i in range(n)),
              f"{label}: one config per shard, named after its pod", str(sorted(files)))
        check("/etc/registry-prober/config/$(POD_NAME).yml" in c["args"]
              and any(e["name"] == "POD_NAME" and e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
                      for e in c.get("env", [])),
              f"{label}: each pod reads the config named after it ($(POD_NAME) from the downward API)")
        placed = {t["name"]: i for i in range(n) for t in files[f"{fullname}-{i}.yml"]["targets"]}
        check(sorted(placed) == sorted(targets)
              and sum(len(files[f"{fullname}-{i}.yml"]["targets"]) for i in range(n)) == len(targets),
              f"{label}: every target is in exactly one shard")
        check(all(placed[t] == shard_of(t, n) for t in targets),
              f"{label}: a target's shard is sha256(name)[0:4] mod {n}", str(placed))
    else:
        check(w["kind"] == "Deployment" and w["spec"]["replicas"] == 1 and list(files) == ["config.yml"]
              and "/etc/registry-prober/config/config.yml" in c["args"],
              f"{label}: one Deployment pod reading config.yml")
        config = dict(files["config.yml"])
        want = copy.deepcopy(merged["config"])
        want["listen"] = "0.0.0.0:9115"
        if expected_instance(values):
            want["instance"] = expected_instance(values)
        check(config == want, f"{label}: config.yml is values.config verbatim (plus listen/instance)")
    # Every file the config names is mounted, and from the chart's Secret it is one of its keys.
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
    secret = by_kind(objects, "Secret")
    keys = set(secret[0]["data"]) if secret else set()
    named = [p for cfg in files.values() for p in walk_files(cfg, [])]
    missing = []
    for key, path in named:
        mount = next((m for m in mounts if path.startswith(m + "/")), None)
        if mount is None:
            missing.append(f"{key} {path} is under no volumeMount")
        elif mounts[mount] == "credentials" and secret and path[len(mount) + 1:] not in keys:
            missing.append(f"{key} {path}: the chart's Secret has no key {path[len(mount) + 1:]}")
    check(not missing, f"{label}: the {len(named)} files the config names are mounted", "; ".join(missing))
    return files


def check_prober_accepts(files, label, values, prober, tmp):
    """Runs `registry-prober check-config` on every rendered config, with the files it names
    made up locally (a test CA and client certificate, a password) at rewritten paths."""
    pki = tmp / "pki"
    if not pki.exists():
        pki.mkdir()
        run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=pki)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "client-key.pem", "-out", "client.csr", "-subj", "/CN=prober")
        # rustls wants an X.509 v3 leaf: give it extensions.
        (pki / "client.ext").write_text("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
        run("openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", "client.pem", "-days", "2", "-extfile", "client.ext")
    contents = {
        "password_file": "test-password\n",
        "ca_file": (pki / "ca.pem").read_text(),
        "client_cert_file": (pki / "client.pem").read_text(),
        "client_key_file": (pki / "client-key.pem").read_text(),
        "headers_file": "x-test: 1\n",
        "docker_config": "{\"auths\": {}}\n",
    }
    env = dict(os.environ)
    for e in (values or {}).get("env", []):
        env[e["name"]] = e.get("value", "test-value")
    root = tmp / f"files-{label}"
    for name, config in files.items():
        text = yaml.safe_dump(config)
        for key, path in walk_files(config, []):
            local = root / path.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(contents[key])
            text = text.replace(path, str(local))
        cfg = tmp / f"{label}-{name}"
        cfg.write_text(text)
        out = subprocess.run([prober, "check-config", str(cfg)], capture_output=True, text=True, env=env)
        check(out.returncode == 0, f"{label}: registry-prober check-config accepts {name}",
              (out.stdout + out.stderr).strip())


def check_crds(objects, label, values, promtool, tmp):
    svc = one(objects, "Service")
    location = (values or {}).get("location", "")
    for sm in by_kind(objects, "ServiceMonitor"):
        ep = sm["spec"]["endpoints"]
        ports = [p["name"] for p in svc["spec"]["ports"]]
        matches = all(svc["metadata"]["labels"].get(k) == v
                      for k, v in sm["spec"]["selector"]["matchLabels"].items())
        check(sm["apiVersion"] == "monitoring.coreos.com/v1" and matches
              and sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
              and all(e["port"] in ports and e["path"] == "/metrics" for e in ep),
              f"{label}: the ServiceMonitor selects the Service and scrapes its /metrics port")
        job = svc["metadata"]["labels"].get(sm["spec"]["jobLabel"])
        check(job == "registry-prober" or (values or {}).get("nameOverride") == job,
              f"{label}: the ServiceMonitor names the job {job!r} (the rules' selector)")
        relabel = [r for e in ep for r in e.get("relabelings", []) if r.get("targetLabel") == "location"]
        if location:
            check(relabel == [{"action": "replace", "targetLabel": "location", "replacement": location}],
                  f"{label}: the ServiceMonitor puts location={location!r} on every series")
        else:
            check(not relabel, f"{label}: no location label without a location")
    for rule in by_kind(objects, "PrometheusRule"):
        groups = rule["spec"].get("groups", [])
        names = [r.get("alert") or r.get("record") for g in groups for r in g["rules"]]
        exprs = [r["expr"] for g in groups for r in g["rules"]]
        check(rule["apiVersion"] == "monitoring.coreos.com/v1" and len(groups) >= 5 and len(names) >= 15,
              f"{label}: the PrometheusRule has {len(groups)} groups, {len(names)} rules")
        want = 'job="registry-prober", location="%s"' % location if location else 'job="registry-prober"'
        # Raw series only: a recorded series (a name with ':') was scoped when it was recorded.
        selectors = [s for e in exprs for name, s in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^{}]*\})", e)
                     if ":" not in name]
        check(selectors and all(s.startswith("{" + want) for s in selectors),
              f"{label}: all {len(selectors)} selectors of the rules start with {want}",
              str([s for s in selectors if not s.startswith("{" + want)][:3]))
        check(all("location" in g for e in exprs for g in re.findall(r"\b(?:by|on) \(([^)]*)\)", e)),
              f"{label}: every by/on clause keeps location")
        base = (values or {}).get("prometheusRule", {}).get("runbookBaseUrl") or \
            "https://github.com/registry-prober/registry-prober/blob/main/alerts/runbook.md"
        alerts = [r for g in groups for r in g["rules"] if "alert" in r]
        check(all(r["annotations"]["runbook_url"] == f"{base}#{r['alert'].lower()}" for r in alerts),
              f"{label}: every alert links to its section of the runbook at {base}")
        if not promtool:
            fail(f"{label}: promtool not found (Debian package prometheus): rules not checked")
            continue
        rules = tmp / f"{label}.rules.yml"
        rules.write_text(yaml.safe_dump(rule["spec"], width=1000))
        out = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
        check(out.returncode == 0, f"{label}: promtool check rules accepts the PrometheusRule",
              out.stdout + out.stderr)
        if location:
            continue
        # Without a location the chart's rules must behave exactly as alerts/: run its tests.
        tests = tmp / f"{label}-tests"
        tests.mkdir(exist_ok=True)
        for t in sorted((ROOT / "alerts/tests").glob("*.yml")):
            text = re.sub(r"(rule_files:\s*\n\s*-\s*).*", lambda m: m.group(1) + str(rules), t.read_text())
            (tests / t.name).write_text(text)
        files = sorted(str(p) for p in tests.glob("*.yml"))
        out = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True)
        check(out.returncode == 0,
              f"{label}: alerts/tests ({len(files)} files) pass against the chart's rules",
              (out.stdout + out.stderr)[-3000:])


def check_dashboards(objects, label):
    for cm in [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboards")]:
        sources = {p.name: p.read_text() for p in (ROOT / "dashboards").glob("registry-prober-*.json")}
        data = cm["data"]
        check(cm["metadata"]["labels"].get("grafana_dashboard") == "1",
              f"{label}: the dashboards ConfigMap has the sidecar label grafana_dashboard=\"1\"")
        check(sorted(data) == sorted(sources)
              and all(json.loads(data[k]) == json.loads(v) for k, v in sources.items()),
              f"{label}: the dashboards ConfigMap holds dashboards/*.json unchanged", str(sorted(data)))
        size = len(yaml.safe_dump(cm).encode())
        check(size < 900 * 1024, f"{label}: dashboards ConfigMap is {size} bytes (limit 1 MiB)")


def check_checksum_rolls(values):
    """The pod annotation changes with the config and with nothing else."""
    base = copy.deepcopy(values)
    changed = copy.deepcopy(values)
    changed["config"]["defaults"] = {"interval": "45s", "timeout": "40s"}
    other = copy.deepcopy(values)
    other["podAnnotations"] = {"example.com/unrelated": "yes"}

    def checksum(v):
        objs, _, _ = render(v)
        return workload(objs)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    a, b, c = checksum(base), checksum(changed), checksum(other)
    check(a != b, "the checksum/config annotation changes when the config changes (pods roll)")
    check(a == c, "the checksum/config annotation stays when only other values change")
    off = copy.deepcopy(values)
    off["rollOnConfigChange"] = False
    objs, _, _ = render(off)
    check("checksum/config" not in workload(objs)["spec"]["template"]["metadata"].get("annotations", {}),
          "rollOnConfigChange: false leaves the annotation out")


def main():
    tmp = Path(tempfile.mkdtemp(prefix="test-chart-"))
    validator = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    promtool = shutil.which("promtool")
    prober = os.environ.get("REGISTRY_PROBER_BIN")
    try:
        check_versions()
        check_generated()
        check_schema_matches_config_rs()
        cases = [("default", None)] + [(p.name.removesuffix("-values.yaml"), p)
                                       for p in sorted((CHART / "ci").glob("*-values.yaml"))]
        sizes = []
        for label, path in cases:
            values = load_values(path)
            with helm.Chart.load(CHART) as chart:
                merged = chart.merge_values(values)
                try:
                    chart.validate_schema(values)
                    ok(f"{label}: values pass values.schema.json")
                except helm.HelmError as e:
                    fail(f"{label}: values fail the schema: {e}")
                    continue
            lint = helm.lint(CHART, values, strict=True)
            problems = [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
            check(not problems, f"{label}: helm lint --strict", str(problems))
            try:
                objects, size, notes = render(values)
            except helm.HelmError as e:
                fail(f"{label}: does not render: {e}")
                continue
            kinds = sorted({o["kind"] for o in objects})
            sizes.append((label, size, len(objects), kinds))
            check_kubernetes_validate(objects, label, tmp, validator)
            check_labels(objects, label, values)
            check_pod(objects, label)
            files = check_config(objects, label, values, merged)
            if prober:
                check_prober_accepts(files, label, values, prober, tmp)
            check_crds(objects, label, values, promtool, tmp)
            check_dashboards(objects, label)
            check(("kubectl --namespace %s port-forward" % NAMESPACE) in notes,
                  f"{label}: NOTES.txt tells how to port-forward to the status page")
        if not prober:
            fail("REGISTRY_PROBER_BIN is not set: rendered configs not checked by the prober")
        check_checksum_rolls(load_values(CHART / "ci/minimal-values.yaml"))
        everything = load_values(CHART / "ci/everything-values.yaml")
        # Without a location the rules must behave as alerts/ does: its promtool tests run.
        # (and the default runbook links, which alerts/tests expect).
        no_location = {**everything, "location": "",
                       "prometheusRule": {k: v for k, v in everything["prometheusRule"].items()
                                          if k != "runbookBaseUrl"}}
        objs, _, _ = render(no_location)
        check_crds(objs, "everything-without-location", no_location, promtool, tmp)
        check_bad_values()
        check_package(tmp)
        print()
        print("rendered manifests (objects, bytes as YAML) per values file:")
        for label, size, count, kinds in sizes:
            print(f"  {label:<16} {count:>3} objects {size:>8} bytes  {', '.join(kinds)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
