// The prober itself: not scraped, not deployed, overrunning, starting runs late, or running an
// old configuration after a failed reload.
local promql = import '../lib/promql.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local a = cfg.registryProberAlerts;

  local down =
    local p = a.RegistryProberDown;
    q.alert(
      'RegistryProberDown',
      '%s == 0' % q.sel('up'),
      p.severity,
      p['for'],
      'Prometheus cannot scrape the registry prober.',
      'Scrapes of the registry prober {{ $labels.instance }} (job {{ $labels.job }}) have failed for %s; ' % p['for']
      + 'no registry probe alert can fire while it is not scraped.',
    );

  local absent =
    local p = a.RegistryProberAbsent;
    q.alert(
      'RegistryProberAbsent',
      'absent(%s)' % q.sel('up'),
      p.severity,
      p['for'],
      'No registry prober is scraped.',
      'Prometheus has had no scrape target matching {%s} for %s: ' % [cfg.registryProberSelector, p['for']]
      + 'the prober is not deployed, not discovered, or its job was renamed. No registry probe alert can fire without it.',
    );

  local overrunning =
    local p = a.RegistryProberRunsOverrunning;
    q.alert(
      'RegistryProberRunsOverrunning',
      'sum %s (increase(%s[%s])) >= %s' % [
        q.by(['target', 'size_class']),
        q.sel('registry_prober_skipped_runs_total', ['cause="overrun"']),
        p.window,
        promql.num(p.minSkipped),
      ],
      p.severity,
      p['for'],
      'Probe runs outlast their interval.',
      'Target {{ $labels.target }} (size class {{ $labels.size_class }}) skipped {{ printf `%.0f` $value }} '
      + 'scheduled runs over the last %s because its previous run was still going.' % p.window,
    );

  local lagging =
    local p = a.RegistryProberScheduleLagging;
    q.alert(
      'RegistryProberScheduleLagging',
      |||
        histogram_quantile(%(q)s,
          sum %(byLe)s (rate(%(buckets)s[%(w)s]))
        ) > %(threshold)s
        and %(on)s
        sum %(by)s (increase(%(count)s[%(w)s])) >= %(minSamples)s
      ||| % {
        q: promql.num(p.quantile),
        byLe: q.by(['job', 'instance', 'le']),
        buckets: q.sel('registry_prober_schedule_lag_seconds_bucket'),
        w: p.window,
        threshold: promql.num(promql.seconds(p.threshold)),
        on: q.on(['job', 'instance']),
        by: q.by(['job', 'instance']),
        count: q.sel('registry_prober_schedule_lag_seconds_count'),
        minSamples: promql.num(p.minSamples),
      },
      p.severity,
      p['for'],
      'Probe runs start late.',
      'The %s of how late runs start on the prober {{ $labels.instance }} is {{ $value | humanizeDuration }} ' % promql.quantileName(p.quantile)
      + 'over the last %s (threshold %s).' % [p.window, p.threshold],
    );

  local reloadFailed =
    local p = a.RegistryProberConfigReloadFailed;
    q.alert(
      'RegistryProberConfigReloadFailed',
      '%s == 0' % q.sel('registry_prober_config_last_reload_successful'),
      p.severity,
      p['for'],
      "The prober's last configuration reload failed.",
      'The last configuration reload of the registry prober {{ $labels.instance }} failed; '
      + 'it keeps probing with its previous configuration.',
    );

  {
    name: 'registry-prober.prober',
    rules:
      (if a.RegistryProberDown.enabled then [down] else [])
      + (if a.RegistryProberAbsent.enabled then [absent] else [])
      + (if a.RegistryProberRunsOverrunning.enabled then [overrunning] else [])
      + (if a.RegistryProberScheduleLagging.enabled then [lagging] else [])
      + (if a.RegistryProberConfigReloadFailed.enabled then [reloadFailed] else []),
  }
