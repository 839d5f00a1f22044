// grafanaDashboards: the overview and details dashboards, with the same variables (data
// source, one per scope label, target, path, size class) and links to each other.
local validate = import '../lib/validate.libsonnet';
local g = import 'lib.libsonnet';

local tag = 'registry-prober';

// What a scope variable offers; labels other than location get a generic text.
local scopeText = {
  location: "Where the probes run from: the `location` label the chart's ServiceMonitor adds (none without it; All then matches every series).",
};

local queryVariable(name, label, query, description) = {
  allValue: '.*',
  current: { text: ['All'], value: ['$__all'] },
  datasource: g.ds,
  description: description,
  hide: 0,
  includeAll: true,
  label: label,
  multi: true,
  name: name,
  options: [],
  query: query,
  refresh: 2,
  regex: '',
  skipUrlSync: false,
  sort: 1,
  type: 'query',
};

// `metric` limited to the variables before it, so each list offers what the earlier ones left.
local within(metric, matchers) = if matchers == [] then metric else '%s{%s}' % [metric, std.join(', ', matchers)];

local variables(d) =
  local scope = d.scope;
  local before(i) = d.scopeMatchers[0:i];
  [{
    description: 'The Prometheus that scrapes registry-prober.',
    hide: 0,
    includeAll: false,
    label: 'Data source',
    multi: false,
    name: 'datasource',
    options: [],
    query: 'prometheus',
    refresh: 1,
    regex: '',
    skipUrlSync: false,
    type: 'datasource',
  }]
  + [
    queryVariable(
      scope[i],
      std.asciiUpper(scope[i][0]) + std.strReplace(scope[i][1:], '_', ' '),
      'label_values(%s, %s)' % [within('registry_prober_runs_total', before(i)), scope[i]],
      std.get(scopeText, scope[i], "The `%s` label of the prober's series (none without it; All then matches every series)." % scope[i]),
    )
    for i in std.range(0, std.length(scope) - 1)
  ]
  + [
    queryVariable(
      'target',
      'Target',
      'label_values(%s, target)' % within('registry_prober_runs_total', d.scopeMatchers),
      'Configured probe targets (the `name` of each target).',
    ),
    queryVariable(
      'path',
      'Path',
      'label_values(%s, path)' % within('registry_prober_steps_total', d.scopeMatchers + [g.T]),
      'Endpoints of the selected targets: origin (where pushes go) and each pull path.',
    ),
    queryVariable(
      'size_class',
      'Size class',
      'label_values(%s, size_class)' % within('registry_prober_runs_total', d.scopeMatchers + [g.T]),
      'Size classes of the selected targets (default when a target has no sizes).',
    ),
  ];

local dashboard(cfg, uid, title, description, panels) =
  local d = g.new(cfg);
  {
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }],
    },
    description: description,
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    links: [{
      asDropdown: false,
      icon: 'dashboard',
      includeVars: true,
      keepTime: true,
      tags: [tag],
      targetBlank: false,
      title: 'registry-prober',
      tooltip: '',
      type: 'dashboards',
      url: '',
    }],
    panels: g.layout(panels(cfg)),
    refresh: '1m',
    // Grafana 11
    schemaVersion: 39,
    tags: [tag],
    templating: { list: variables(d) },
    time: { from: 'now-6h', to: 'now' },
    timepicker: {},
    timezone: '',
    title: title,
    uid: uid,
    version: 1,
    weekStart: '',
  };

{
  grafanaDashboards+:: {
    local cfg = validate.checked($._config),
    'registry-prober-overview.json': dashboard(
      cfg,
      'registry-prober-overview',
      'registry-prober overview',
      'Is every registry path working for users: run and step success, failure reasons, time since the '
      + 'last success, canary ages, certificates.',
      import 'overview.libsonnet',
    ),
    'registry-prober-details.json': dashboard(
      cfg,
      'registry-prober-details',
      'registry-prober details',
      'Where the time goes and whether the prober itself is healthy: step latency, HTTP phases, '
      + 'throughput by size class, propagation delay, scheduling, cleanup and configuration.',
      import 'details.libsonnet',
    ),
  },
}
