// A step got slower than its own baseline (the recording rules of lib/recorded.libsonnet).
local promql = import '../lib/promql.libsonnet';
local recorded = import '../lib/recorded.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local p = cfg.registryProberAlerts.RegistryProberStepLatencyRegression;
  local r = recorded(cfg);
  local regression = q.alert(
    'RegistryProberStepLatencyRegression',
    |||
      # at least %(factor)sx the step's own baseline...
      %(recent)s{step!="wait_propagation"}
        > %(factor)s * %(baseline)s
      # ...and at least %(minIncrease)s above it (2ms -> 5ms is noise, not a regression)
      and
      (
        %(recent)s
        - %(baseline)s
      ) >= %(minIncreaseSeconds)s
      # enough observations for the quantile to mean something
      and %(on)s
      sum %(by)s (increase(%(count)s[%(w)s])) >= %(minSamples)s
    ||| % {
      recent: r.recent,
      baseline: r.baseline,
      factor: promql.num(p.factor),
      minIncrease: p.minIncrease,
      minIncreaseSeconds: promql.num(promql.seconds(p.minIncrease)),
      on: q.on(['target', 'path', 'size_class', 'step']),
      by: q.by(['target', 'path', 'size_class', 'step']),
      count: q.sel('registry_prober_step_duration_seconds_count', ['step!="wait_propagation"']),
      w: p.window,
      minSamples: promql.num(p.minSamples),
    },
    p.severity,
    p['for'],
    'A probe step got slower than its own baseline.',
    // the baseline of the alert's own series (and group labels: `first` would pick any location)
    local baselineQuery = '%s{%s}' % [
      r.baseline,
      std.join(',', ['target=%q', 'path=%q', 'size_class=%q', 'step=%q'] + ['%s=%%q' % l for l in cfg.registryProberGroupLabels]),
    ];
    'The %s of step {{ $labels.step }} through path {{ $labels.path }} of target {{ $labels.target }} ' % promql.quantileName(p.quantile)
    + '(size class {{ $labels.size_class }}) is {{ $value | humanizeDuration }} over the last %s, against a typical ' % p.window
    + '{{ with printf `' + baselineQuery + '` '
    + q.targs(['$labels.target', '$labels.path', '$labels.size_class', '$labels.step'])
    + ' | query }}{{ . | first | value | humanizeDuration }}{{ else }}(unknown){{ end }}'
    + ' over the last %s.' % p.baselineWindow,
  );

  { name: 'registry-prober.latency', rules: if p.enabled then [regression] else [] }
