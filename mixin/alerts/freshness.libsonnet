// A target's runs keep failing (confirmed by confirmation runs), or it has had no successful run
// for several of its intervals.
local promql = import '../lib/promql.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local f = cfg.registryProberAlerts.RegistryProberTargetFailing;
  local failing = q.alert(
    'RegistryProberTargetFailing',
    |||
      # runs of a (target, size class) that failed in a row, scheduled and confirmation runs: a failed
      # run and the confirmation runs after it. One transient failure is cleared by the next run.
      max %(by)s (%(streak)s) >= %(n)s
    ||| % {
      by: q.by(['target', 'size_class', 'path', 'step']),
      streak: q.sel('registry_prober_consecutive_failed_runs'),
      n: promql.num(f.failedRuns),
    },
    f.severity,
    f['for'],
    'Every run of a registry target fails, confirmed.',
    'The last {{ printf `%.0f` $value }} runs of target {{ $labels.target }} (size class {{ $labels.size_class }}) '
    + 'failed in a row, a failed run and the confirmation runs after it; the latest first failed at step '
    + '{{ $labels.step }} through path {{ $labels.path }}. Failed runs by reason over the last %s: ' % f.reasonsWindow
    + q.reasons(
      q.tsel('registry_prober_failures_total', ['target=%q', 'size_class=%q']),
      'reason',
      f.reasonsWindow,
      ['$labels.target', '$labels.size_class'],
    )
    + '.',
  );
  local p = cfg.registryProberAlerts.RegistryProberTargetStale;
  local lastSuccess = q.sel('registry_prober_last_success_timestamp_seconds');
  local stale = q.alert(
    'RegistryProberTargetStale',
    |||
      # intervals since the last success
      (
        (time() - max %(by)s (%(lastSuccess)s))
        /
        max %(by)s (%(interval)s)
      ) >= %(n)s
      or
      # after a prober restart the last-success gauge is absent until a run succeeds: count the
      # runs that failed or were skipped since the start instead
      (
        (
          sum %(by)s (%(failedRuns)s)
          +
          sum %(by)s (%(skipped)s)
        ) >= %(n)s
        unless %(on)s
        %(lastSuccess)s
      )
    ||| % {
      by: q.by(['target', 'size_class']),
      on: q.on(['target', 'size_class']),
      lastSuccess: lastSuccess,
      interval: q.sel('registry_prober_target_interval_seconds'),
      failedRuns: q.sel('registry_prober_runs_total', ['result="failure"']),
      skipped: q.sel('registry_prober_skipped_runs_total'),
      n: promql.num(p.intervals),
    },
    p.severity,
    p['for'],
    'A registry target has had no successful probe run for several intervals.',
    local args = ['$labels.target', '$labels.size_class'];
    local matchers = ['target=%q', 'size_class=%q'];
    'Target {{ $labels.target }} (size class {{ $labels.size_class }}) has had no successful run for '
    + '{{ printf `%%.0f` $value }} of its intervals. Failed runs by reason over the last %s: ' % p.reasonsWindow
    + q.reasons(q.tsel('registry_prober_failures_total', matchers), 'reason', p.reasonsWindow, args)
    + '. Skipped runs by cause over the last %s: ' % p.reasonsWindow
    + q.reasons(q.tsel('registry_prober_skipped_runs_total', matchers), 'cause', p.reasonsWindow, args)
    + '.',
  );

  {
    name: 'registry-prober.freshness',
    rules:
      (if f.enabled then [failing] else [])
      + (if p.enabled then [stale] else []),
  }
