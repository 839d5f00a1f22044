// Pushed images reach a pull path late, or not at all.
local promql = import '../lib/promql.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local a = cfg.registryProberAlerts;

  local slow =
    local p = a.RegistryProberPropagationSlow;
    q.alert(
      'RegistryProberPropagationSlow',
      |||
        histogram_quantile(%(q)s,
          sum %(byLe)s (rate(%(buckets)s[%(w)s]))
        ) > %(threshold)s
        and %(on)s
        sum %(by)s (increase(%(count)s[%(w)s])) >= %(minSamples)s
      ||| % {
        q: promql.num(p.quantile),
        byLe: q.by(['target', 'path', 'le']),
        buckets: q.sel('registry_prober_propagation_delay_seconds_bucket'),
        w: p.window,
        threshold: promql.num(promql.seconds(p.threshold)),
        on: q.on(['target', 'path']),
        by: q.by(['target', 'path']),
        count: q.sel('registry_prober_propagation_delay_seconds_count'),
        minSamples: promql.num(p.minSamples),
      },
      p.severity,
      p['for'],
      'Pushed images take too long to reach a pull path.',
      'The %s delay between a push to target {{ $labels.target }} and its manifest being served by path ' % promql.quantileName(p.quantile)
      + '{{ $labels.path }} is {{ $value | humanizeDuration }} over the last %s (threshold %s).' % [p.window, p.threshold],
    );

  local failing =
    local p = a.RegistryProberPropagationFailing;
    local failed = q.sel('registry_prober_steps_total', ['step="wait_propagation"', 'result="failure"']);
    q.alert(
      'RegistryProberPropagationFailing',
      |||
        (
          sum %(by)s (increase(%(failed)s[%(w)s]))
          /
          sum %(by)s (increase(%(executed)s[%(w)s]))
        ) >= %(ratio)s
        and
        sum %(by)s (increase(%(failed)s[%(w)s])) >= %(minf)s
      ||| % {
        by: q.by(['target', 'path']),
        failed: failed,
        executed: q.sel('registry_prober_steps_total', ['step="wait_propagation"']),
        w: p.window,
        ratio: promql.num(p.failureRatio),
        minf: promql.num(p.minFailures),
      },
      p.severity,
      p['for'],
      'Pushed images do not reach a pull path.',
      'Step wait_propagation for path {{ $labels.path }} of target {{ $labels.target }} failed in '
      + '{{ $value | humanizePercentage }} of runs over the last %s. ' % p.window
      + 'Reasons (propagation_timeout: the image did not show up in time): '
      + q.reasons(
        q.tsel('registry_prober_step_failures_total', ['target=%q', 'path=%q', 'step="wait_propagation"']),
        'reason',
        p.window,
        ['$labels.target', '$labels.path'],
      )
      + '.',
    );

  {
    name: 'registry-prober.propagation',
    rules:
      (if a.RegistryProberPropagationSlow.enabled then [slow] else [])
      + (if a.RegistryProberPropagationFailing.enabled then [failing] else []),
  }
