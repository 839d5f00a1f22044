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

  local low = cfg.registryProberAlerts.RegistryProberRateLimitLow;
  local limit = q.sel('registry_prober_rate_limit_requests');
  local rateLimitLow = q.alert(
    'RegistryProberRateLimitLow',
    |||
      # the share of the rate limit the registry last said is left on the path
      %(remaining)s
      /
      %(limit)s
      <= %(ratio)s
      and
      %(limit)s > 0
    ||| % {
      remaining: q.sel('registry_prober_rate_limit_remaining_requests'),
      limit: limit,
      ratio: promql.num(low.ratio),
    },
    low.severity,
    low['for'],
    "Little of the registry's rate limit is left.",
    'Target {{ $labels.target }} has {{ $value | humanizePercentage }} of its rate limit left on path '
    + '{{ $labels.path }}, as the registry last said: the prober, and whatever shares its account or '
    + 'address, is about to be throttled.',
  );

  {
    name: 'registry-prober.rate-limits',
    rules: (if p.enabled then [rateLimited] else []) + (if low.enabled then [rateLimitLow] else []),
  }
