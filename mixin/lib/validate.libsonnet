// Checks a _config before anything is rendered from it: every problem is listed at once, each
// naming the field, the value and what it must be. Unknown alert names and keys are errors,
// since jsonnet would otherwise keep a misspelt `minFailurs` and silently use the default.
local defaults = (import '../config.libsonnet')._config;
local promql = import 'promql.libsonnet';

// What each per-alert key holds; a key of config.libsonnet missing here fails the check below.
local kinds = {
  enabled: 'bool',
  severity: 'severity',
  'for': 'duration',
  window: 'duration',
  reasonsWindow: 'duration',
  baselineWindow: 'duration',
  minIncrease: 'duration',
  threshold: 'duration',
  warningWithin: 'duration',
  criticalWithin: 'duration',
  warningFor: 'duration',
  criticalFor: 'duration',
  failureRatio: 'ratio',
  ratio: 'ratio',
  maxPullFailureRatio: 'share',
  quantile: 'share',
  factor: 'atLeastOne',
  intervals: 'atLeastOne',
  minFailures: 'atLeastOne',
  failedRuns: 'atLeastOne',
  minAbandoned: 'atLeastOne',
  minRuns: 'atLeastOne',
  minSkipped: 'atLeastOne',
  minSamples: 'atLeastOne',
};

// Labels the rules already group on: a group label must not repeat one.
local ruleLabels = ['target', 'path', 'size_class', 'step', 'reason', 'cause', 'job', 'instance', 'le'];

local show(v) = if std.isString(v) then '"%s"' % v else std.manifestJsonMinified(v);

local isLabelName(s) =
  local ok(c, first) = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
  std.isString(s) && std.length(s) > 0
  && std.length([i for i in std.range(0, std.length(s) - 1) if !ok(std.stringChars(s)[i], i == 0)]) == 0;

local valueProblem(kind, v) =
  if kind == 'bool' then (if std.isBoolean(v) then null else 'is not true or false')
  else if kind == 'severity' then (if v == 'critical' || v == 'warning' then null else 'is not "critical" or "warning"')
  else if kind == 'duration' then (if promql.isDuration(v) then null else 'is not a Prometheus duration with one unit such as 15m')
  else if !std.isNumber(v) then 'is not a number'
  else if kind == 'ratio' then (if v > 0 && v <= 1 then null else 'is not in (0, 1]')
  else if kind == 'share' then (if v >= 0 && v <= 1 then null else 'is not in [0, 1]')
  else if kind == 'atLeastOne' then (if v >= 1 then null else 'is below 1')
  else error 'validate.libsonnet: no check for kind ' + kind;

local alertProblems(name, given) =
  local where = '_config.registryProberAlerts.%s' % name;
  local known = std.objectFields(defaults.registryProberAlerts[name]);
  if !std.isObject(given) then ['%s: %s is not an object' % [where, show(given)]]
  else
    ['%s.%s: unknown key (known: %s)' % [where, k, std.join(', ', known)] for k in std.objectFields(given) if !std.member(known, k)]
    + ['%s.%s: missing (merge with `%s+: {...}` to keep the other defaults)' % [where, k, name] for k in known if !std.objectHas(given, k)]
    + [
      '%s.%s: %s %s' % [where, k, show(given[k]), valueProblem(kinds[k], given[k])]
      for k in known
      if std.objectHas(given, k) && valueProblem(kinds[k], given[k]) != null
    ]
    + (
      // the warning covers warningWithin..criticalWithin: the critical one must be shorter
      local g = given;
      if name == 'RegistryProberTLSCertificateExpiring'
         && promql.isDuration(std.get(g, 'warningWithin')) && promql.isDuration(std.get(g, 'criticalWithin'))
         && promql.seconds(g.criticalWithin) >= promql.seconds(g.warningWithin)
      then ['%s: criticalWithin (%s) must be shorter than warningWithin (%s)' % [where, g.criticalWithin, g.warningWithin]]
      else []
    );

local labelListProblems(field, value, taken) =
  local where = '_config.' + field;
  if !std.isArray(value) then ['%s: %s is not a list of label names' % [where, show(value)]]
  else
    ['%s: %s is not a label name' % [where, show(l)] for l in value if !isLabelName(l)]
    + ['%s: %s is grouped on already' % [where, show(l)] for l in value if std.member(taken, l)]
    + (if std.length(std.set(value)) != std.length(value) then ['%s: %s repeats a label' % [where, show(value)]] else []);

local problems(cfg) =
  local sel = cfg.registryProberSelector;
  local alerts = cfg.registryProberAlerts;
  (if std.isString(sel) && std.length(sel) > 0 && std.length(std.findSubstr('`', sel)) == 0 then []
   // `up` and absent() need it: without a job matcher they would watch every scrape; a backtick
   // would end the Go template strings the descriptions quote queries in
   else ['_config.registryProberSelector: %s must be label matchers such as job="registry-prober"' % show(sel)])
  + (if std.isString(cfg.registryProberRunbookURL) && std.length(cfg.registryProberRunbookURL) > 0 then []
     else ['_config.registryProberRunbookURL: %s is not a URL' % show(cfg.registryProberRunbookURL)])
  + labelListProblems('registryProberGroupLabels', cfg.registryProberGroupLabels, ruleLabels)
  + labelListProblems('registryProberDashboardScopeLabels', cfg.registryProberDashboardScopeLabels, ['target', 'path', 'size_class'])
  + (
    if !std.isObject(alerts) then ['_config.registryProberAlerts: is not an object']
    else
      [
        '_config.registryProberAlerts.%s: unknown alert (known: %s)' % [n, std.join(', ', std.objectFields(defaults.registryProberAlerts))]
        for n in std.objectFields(alerts)
        if !std.objectHas(defaults.registryProberAlerts, n)
      ]
      + std.flattenArrays([
        if std.objectHas(alerts, n) then alertProblems(n, alerts[n]) else ['_config.registryProberAlerts.%s: missing' % n]
        for n in std.objectFields(defaults.registryProberAlerts)
      ])
  );

{
  // `cfg` when it has no problems; otherwise an error listing all of them.
  checked(cfg)::
    local unknownKinds = std.setDiff(
      std.set(std.flattenArrays([std.objectFields(a) for a in std.objectValues(defaults.registryProberAlerts)])),
      std.set(std.objectFields(kinds))
    );
    local found = problems(cfg);
    if unknownKinds != [] then error 'validate.libsonnet: keys without a kind: ' + std.join(', ', unknownKinds)
    else if found != [] then error 'registry-prober mixin: invalid _config:\n  ' + std.join('\n  ', found)
    else cfg,
}
