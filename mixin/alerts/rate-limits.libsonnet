// The registry keeps answering 429 to the prober.
local promql = import '../lib/promql.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local p = cfg.registryProberAlerts.RegistryProberRateLimited;
  local by = q.by(['target', 'size_class']);
  local skipped = q.sel('registry_prober_skipped_runs_total', ['cause="rate_limited"']);
  local limited = |||
    sum %(by)s (increase(%(skipped)s[%(w)s]))
    +
    sum %(by)s (increase(%(failed)s[%(w)s]))
  ||| % { by: by, skipped: skipped, failed: q.sel('registry_prober_failures_total', ['reason="rate_limited"']), w: p.window };
  local limitedIndented = promql.indent(std.rstripChars(limited, '\n'), 2);
  local rateLimited = q.alert(
    'RegistryProberRateLimited',
    |||
      # rate-limited runs (skipped waiting for Retry-After, or failed with 429)...
      (
      %(limited)s
      )
      # ...over scheduled runs (those that ran, plus those skipped for the rate limit)
      /
      (
        sum %(by)s (increase(%(runs)s[%(w)s]))
        +
        sum %(by)s (increase(%(skipped)s[%(w)s]))
      ) >= %(ratio)s
      and
      (
      %(limited)s
      ) >= %(n)s
    ||| % {
      limited: limitedIndented,
      by: by,
      runs: q.sel('registry_prober_runs_total'),
      skipped: skipped,
      w: p.window,
      ratio: promql.num(p.ratio),
      n: promql.num(p.minRuns),
    },
    p.severity,
    p['for'],
    'The registry keeps rate-limiting the prober.',
    '{{ $value | humanizePercentage }} of the scheduled runs of target {{ $labels.target }} (size class '
    + '{{ $labels.size_class }}) were rate limited (HTTP 429, skipped waiting for Retry-After or failed) '
    + 'over the last %s.' % p.window,
  );

  { name: 'registry-prober.rate-limits', rules: if p.enabled then [rateLimited] else [] }
