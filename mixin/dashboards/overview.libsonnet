// The overview dashboard: is every registry path working for users right now?
local g = import 'lib.libsonnet';

function(cfg)
  local d = g.new(cfg);
  local u = g.units;
  local T = g.T;
  local P = g.P;
  local S = g.S;
  local byTS = ['target', 'size_class'];
  local byTP = ['target', 'path'];
  // 'Never succeeded' joins per scope too: a `by` that dropped a scope label would make the
  // `on` compare it with "" and exclude nothing
  local neverBy = std.join(', ', d.scope + ['target', 'size_class']);
  [
    g.row('Right now'),
    g.stat(
      'Run success ratio over the time range',
      u.ratio,
      [g.q('sum by (target) (increase(%s[$__range]))\n/\nsum by (target) (increase(%s[$__range]))' % [
        d.m('runs_total', [T, S, g.success]),
        d.m('runs_total', [T, S]),
      ], '{{target}}')],
      "Share of probe runs (push, pull, verify, cleanup) that succeeded over the dashboard's time range, "
      + 'per target. A run fails when any of its steps fails.',
      steps=g.thresholds(['red', 0.95, 'yellow', 0.99, 'green']),
      w=6,
    ),
    g.stat(
      'Time since last success',
      u.seconds,
      [g.q('time() - max by (target, size_class) (%s)' % d.m('last_success_timestamp_seconds', [T, S]), g.legend(byTS))],
      'Seconds since the last successful run of each target and size class. Compare with the interval '
      + "(details dashboard). Absent until a size class first succeeds: see 'Never succeeded'.",
      steps=g.thresholds(['green', 300, 'yellow', 900, 'red']),
      w=6,
    ),
    g.stat(
      'Never succeeded since the prober started',
      u.count,
      [g.q('count(\n  (sum by (%s) (%s) > 0)\n  unless on (%s) %s\n) or vector(0)' % [
        neverBy,
        d.m('runs_total', [T, S, g.failure]),
        neverBy,
        d.m('last_success_timestamp_seconds'),
      ], 'size classes')],
      'Target size classes that have failed runs and no success since the prober started (their '
      + "last-success gauge is absent, so 'Time since last success' cannot show them).",
      steps=g.thresholds(['green', 1, 'red']),
      w=4,
    ),
    g.stat(
      'Oldest canary age',
      u.seconds,
      [g.q('time() - %s' % d.m('canary_oldest_push_timestamp_seconds', [T]), '{{target}}')],
      'Age of the oldest canary each target keeps and re-checks: data written this long ago is still '
      + 'served with the bytes that were pushed.',
      w=4,
    ),
    g.stat(
      'Canaries kept',
      u.count,
      [g.q(d.m('canaries', [T]), '{{target}}')],
      'Canaries each target keeps and checks on every run of its first size class.',
      w=4,
    ),
    g.row('Success'),
    g.timeseries(
      'Run success ratio by target and size class',
      u.ratio,
      [g.q(d.ratio('runs_total', byTS, [T, S], g.success), g.legend(byTS))],
      'Share of runs that succeeded, per target and size class.',
      min=0,
      max=1,
    ),
    g.timeseries(
      'Step success ratio by target and path',
      u.ratio,
      [g.q(d.ratio('steps_total', byTP, [T, P], g.success), g.legend(byTP))],
      'Share of steps that succeeded, per target and the endpoint (path) they talked to: origin is the '
      + "target's own endpoint, the others are its pull paths.",
      min=0,
      max=1,
    ),
    g.timeseries(
      'Failed runs by reason',
      u.perMin,
      [g.q(d.perMinute('failures_total', byTS + ['reason'], [T, S], onlyNonzero=true), g.legend(byTS + ['reason']))],
      'Failed runs per minute by the reason of the step that stopped them. Empty while nothing fails.',
      noValue='no failures',
      bars=true,
      stack=true,
    ),
    g.timeseries(
      'Failed steps by path, step and reason',
      u.perMin,
      [g.q(
        d.perMinute('step_failures_total', ['target', 'path', 'step', 'reason'], [T, P], onlyNonzero=true),
        g.legend(['target', 'path', 'step', 'reason'])
      )],
      'Every failed step (not only the first of a run), per minute. These series appear on their first '
      + 'failure, which rate() cannot see: the run-level panel next to this one counts from zero.',
      noValue='no failures',
      bars=true,
      stack=true,
    ),
    g.row('Canaries and certificates'),
    g.timeseries(
      'Oldest canary age',
      u.seconds,
      [
        g.q('time() - %s' % d.m('canary_oldest_push_timestamp_seconds', [T]), '{{target}} oldest'),
        g.q(d.m('canaries', [T]), '{{target}} canaries kept'),
      ],
      'Age of the oldest kept canary. It grows with time until the oldest is rotated out; a drop to a '
      + 'young age means canaries were lost and pushed again. The count of canaries kept is on the right axis.',
      overrides=[{
        matcher: { id: 'byFrameRefID', options: 'B' },
        properties: [{ id: 'unit', value: u.count }, { id: 'custom.axisPlacement', value: 'right' }],
      }],
    ),
    g.timeseries(
      'Time until the earliest certificate expires',
      u.seconds,
      [g.q('min by (target, path) (%s) - time()' % d.m('tls_certificate_expiry_timestamp_seconds', [T, P]), g.legend(byTP))],
      'Time left on the earliest-expiring leaf certificate seen by the latest run that opened a TLS '
      + 'connection, per target and path. Plain-http paths have none.',
    ),
    g.row('Latency'),
    g.timeseries(
      'Run duration p95 (dashed: p95 over the last day)',
      u.seconds,
      [
        g.q(d.quantile(0.95, 'run_duration_seconds', byTS, [T, S]), g.legend(byTS) + ' p95'),
        g.q(d.quantile(0.95, 'run_duration_seconds', byTS, [T, S], g.baseline), g.legend(byTS) + ' p95 over ' + g.baseline),
      ],
      'Wall-clock duration of a whole run, cleanup included, against its usual value over the last day.',
      overrides=[g.dashed('B')],
      w=24,
    ),
  ]
