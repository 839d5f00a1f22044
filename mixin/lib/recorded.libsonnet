// The recording rules: a step's latency quantile over the alert's window, and its baseline.
// Recorded whether or not RegistryProberStepLatencyRegression is enabled: dashboards can show
// a step's latency against its baseline from them. Their names follow the quantile and windows.
local promql = import 'promql.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local p = cfg.registryProberAlerts.RegistryProberStepLatencyRegression;
  local recent = 'target_path_size_class_step:registry_prober_step_duration_seconds:%s_%s' % [promql.quantileName(p.quantile), p.window];
  local baseline = '%s_median_%s' % [recent, p.baselineWindow];
  {
    recent: recent,
    baseline: baseline,
    rules: [
      q.record(recent, |||
        # `>= 0` drops the NaN of a step without observations in the window
        histogram_quantile(%(q)s,
          sum %(by)s (rate(%(buckets)s[%(w)s]))
        ) >= 0
      ||| % {
        q: promql.num(p.quantile),
        by: q.by(['target', 'path', 'size_class', 'step', 'le']),
        buckets: q.sel('registry_prober_step_duration_seconds_bucket'),
        w: p.window,
      }),
      q.record(baseline, |||
        # the typical value of the recent quantile: a regression has to last half of %(bw)s to become
        # the baseline
        quantile_over_time(0.5, %(recent)s[%(bw)s])
      ||| % { bw: p.baselineWindow, recent: recent }),
    ],
  }
