// Artifacts (signatures, SBOMs) cannot be found through the referrers of their subject.
local promql = import '../lib/promql.libsonnet';
local steps = import '../lib/steps.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local a = cfg.registryProberAlerts;

  // Per execution: each referrers step runs once per artifact a run pushes or checks (the run's,
  // and each canary's), and a broken referrers path fails it every time, so the share of failed
  // executions is the share of lookups users would see fail.
  local failing =
    local p = a.RegistryProberReferrersFailing;
    local matcher = 'step=~"%s"' % steps.re(steps.referrers);
    local failed = q.sel('registry_prober_steps_total', [matcher, 'result="failure"']);
    q.alert(
      'RegistryProberReferrersFailing',
      |||
        (
          sum %(by)s (increase(%(failed)s[%(w)s]))
          /
          sum %(by)s (increase(%(executed)s[%(w)s]))
        ) >= %(ratio)s
        and
        sum %(by)s (increase(%(failed)s[%(w)s])) >= %(minf)s
      ||| % {
        by: q.by(['target', 'path', 'step']),
        failed: failed,
        executed: q.sel('registry_prober_steps_total', [matcher]),
        w: p.window,
        ratio: promql.num(p.failureRatio),
        minf: promql.num(p.minFailures),
      },
      p.severity,
      p['for'],
      'Artifacts cannot be found through the referrers of their image.',
      'Step {{ $labels.step }} through path {{ $labels.path }} of target {{ $labels.target }} failed in '
      + '{{ $value | humanizePercentage }} of its executions over the last %s: clients looking up ' % p.window
      + 'signatures or SBOMs of an image fail the same way. Reasons: '
      + q.reasons(
        q.tsel('registry_prober_step_failures_total', ['target=%q', 'path=%q', 'step=%q']),
        'reason',
        p.window,
        ['$labels.target', '$labels.path', '$labels.step'],
      )
      + '. The path serves referrers by: '
      + '{{ range printf `%s` %s | query }}{{ .Labels.mode }}{{ else }}not known yet{{ end }}.' % [
        q.tsel('registry_prober_referrers_info', ['target=%q', 'path=%q']),
        q.targs(['$labels.target', '$labels.path']),
      ],
    );

  {
    name: 'registry-prober.referrers',
    rules: if a.RegistryProberReferrersFailing.enabled then [failing] else [],
  }
