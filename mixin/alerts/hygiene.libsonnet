// The prober leaves things behind on the registry: failed cleanups, abandoned upload sessions,
// failing sweeps of leftovers.
local promql = import '../lib/promql.libsonnet';
local steps = import '../lib/steps.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local a = cfg.registryProberAlerts;

  // The share of `executed` that failed over the window, when at least `minf` failed.
  local failedShare(by, failed, executed, w, ratio, minf) =
    |||
      (
        sum %(by)s (increase(%(failed)s[%(w)s]))
        /
        sum %(by)s (increase(%(executed)s[%(w)s]))
      ) >= %(ratio)s
      and
      sum %(by)s (increase(%(failed)s[%(w)s])) >= %(minf)s
    ||| % { by: q.by(by), failed: failed, executed: executed, w: w, ratio: promql.num(ratio), minf: promql.num(minf) };

  local cleanup =
    local p = a.RegistryProberCleanupFailing;
    q.alert(
      'RegistryProberCleanupFailing',
      failedShare(
        ['target', 'step'],
        q.sel('registry_prober_cleanup_failures_total'),
        q.sel('registry_prober_steps_total', ['step=~"%s"' % steps.re(steps.cleanup)]),
        p.window,
        p.failureRatio,
        p.minFailures,
      ),
      p.severity,
      p['for'],
      'Probe cleanup fails and leaves objects on the registry.',
      'Cleanup step {{ $labels.step }} of target {{ $labels.target }} failed in {{ $value | humanizePercentage }} '
      + 'of its executions over the last %s; each failure leaves a manifest, blob or upload session behind. Reasons: ' % p.window
      + q.reasons(
        q.tsel('registry_prober_step_failures_total', ['target=%q', 'step=%q']),
        'reason',
        p.window,
        ['$labels.target', '$labels.step'],
      )
      + '.',
    );

  local abandoned =
    local p = a.RegistryProberUploadSessionsAbandoned;
    q.alert(
      'RegistryProberUploadSessionsAbandoned',
      'sum %s (increase(%s[%s])) >= %s' % [
        q.by(['target']),
        q.sel('registry_prober_upload_sessions_total', ['outcome="abandoned"']),
        p.window,
        promql.num(p.minAbandoned),
      ],
      p.severity,
      p['for'],
      'The prober leaves upload sessions open on the registry.',
      'Target {{ $labels.target }} left {{ printf `%%.0f` $value }} upload sessions open over the last %s ' % p.window
      + '(neither completed nor cancelled); they hold upload storage on the registry until it purges them.',
    );

  local sweeps =
    local p = a.RegistryProberSweepsFailing;
    q.alert(
      'RegistryProberSweepsFailing',
      failedShare(
        ['target'],
        q.sel('registry_prober_sweeps_total', ['result="failure"']),
        q.sel('registry_prober_sweeps_total'),
        p.window,
        p.failureRatio,
        p.minFailures,
      ),
      p.severity,
      p['for'],
      'Hygiene sweeps of leftover tags and upload sessions fail.',
      '{{ $value | humanizePercentage }} of the hygiene sweeps of target {{ $labels.target }} failed over the last '
      + '%s: leftovers of crashed runs (tags, upload sessions) are not being removed.' % p.window,
    );

  {
    name: 'registry-prober.hygiene',
    rules:
      (if a.RegistryProberCleanupFailing.enabled then [cleanup] else [])
      + (if a.RegistryProberUploadSessionsAbandoned.enabled then [abandoned] else [])
      + (if a.RegistryProberSweepsFailing.enabled then [sweeps] else []),
  }
